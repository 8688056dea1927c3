/* fuzz_passwd.c - one passwd-file line: an entry, a comment or an error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/passwd_file.h"
#include "common/xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = xstrndup((const char *)data, size);
	struct user_record rec;
	const char *why = NULL;
	int rc = passwd_parse_line(line, &rec, &why);
	if (rc < 0 && why == NULL)
		abort();
	if (rc == 1 && (rec.name[0] == '\0' || strchr(rec.name, ':') != NULL))
		abort();
	free(line);
	return 0;
}
