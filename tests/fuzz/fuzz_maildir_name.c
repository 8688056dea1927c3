/* fuzz_maildir_name.c - UIDLs and sizes derived from Maildir file names:
 * every UIDL is 1..70 characters in 0x21..0x7E (RFC 1939 §7). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "store/maildir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *name = xstrndup((const char *)data, size);
	char uidl[POP3_UIDL_MAX + 1];
	uint64_t w;
	(void)maildir_name_size(name, &w);
	maildir_uidl_for(name, strlen(name), uidl);
	size_t n = strlen(uidl);
	if (n < 1 || n > POP3_UIDL_MAX)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)uidl[i] < 0x21 || (unsigned char)uidl[i] > 0x7e)
			abort();
	free(name);
	return 0;
}
