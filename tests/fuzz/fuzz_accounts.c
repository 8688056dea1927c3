/* fuzz_accounts.c - pigeon fetch's fetch.conf reader (INI + account checks):
 * any text gives accounts or a message naming the file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/account.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	if (path[0] == '\0')
		snprintf(path, sizeof(path), "/tmp/fuzz-fetch-%ld.conf", (long)getpid());
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	struct account_list list;
	char err[1024] = "";
	if (accounts_load(path, &list, err, sizeof(err)) < 0 && strncmp(err, path, strlen(path)) != 0)
		abort();
	accounts_free(&list);
	return 0;
}
