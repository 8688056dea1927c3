/* location.c - expanding the maildrop path template. */
#include "store/location.h"

#include <string.h>

/* A piece of a user name placed into a path must stay one path component. */
static int safe_component(const char *p, size_t len)
{
	if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
		return -1;
	return memchr(p, '/', len) == NULL ? 0 : -1;
}

static int put(char *out, size_t outlen, size_t *pos, const char *p, size_t len)
{
	if (*pos + len >= outlen)
		return -1;
	memcpy(out + *pos, p, len);
	*pos += len;
	return 0;
}

int location_expand(const char *tmpl, const char *user, const char *home, char *out, size_t outlen)
{
	size_t pos = 0;
	const char *at = strchr(user, '@');
	size_t ulen = strlen(user);
	size_t nlen = at ? (size_t)(at - user) : ulen;
	const char *domain = at ? at + 1 : "";
	if (tmpl[0] == '\0') {
		if (home[0] != '/')
			return -1;
		tmpl = "%h/Maildir";
	}
	for (const char *t = tmpl; *t != '\0'; t++) {
		int rc;
		if (*t != '%') {
			rc = put(out, outlen, &pos, t, 1);
		} else {
			switch (*++t) {
			case 'u':
				rc = safe_component(user, ulen);
				if (rc == 0)
					rc = put(out, outlen, &pos, user, ulen);
				break;
			case 'n':
				rc = safe_component(user, nlen);
				if (rc == 0)
					rc = put(out, outlen, &pos, user, nlen);
				break;
			case 'd':
				rc = safe_component(domain, strlen(domain));
				if (rc == 0)
					rc = put(out, outlen, &pos, domain, strlen(domain));
				break;
			case 'h':
				rc = home[0] == '/' ? put(out, outlen, &pos, home, strlen(home)) : -1;
				break;
			case '%':
				rc = put(out, outlen, &pos, "%", 1);
				break;
			default:
				rc = -1;
			}
		}
		if (rc < 0)
			return -1;
	}
	out[pos] = '\0';
	return out[0] == '/' ? 0 : -1;
}
