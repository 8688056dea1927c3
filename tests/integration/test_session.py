"""A full session with Python's poplib against a real pigeond."""


def test_full_session_retrieve_and_delete(server):
    server.deliver("alice", b"Subject: one\n\nfirst\n")
    server.deliver("alice", b"Subject: two\n\nsecond\n")
    p = server.login()
    count, size = p.stat()
    assert count == 2
    resp, lines, octets = p.retr(1)
    assert lines == [b"Subject: one", b"", b"first"]
    p.dele(1)
    assert p.stat()[0] == 1
    p.quit()
    names = server.messages("alice")
    assert len(names) == 1 and "," not in names[0].split(":")[0][-3:]
