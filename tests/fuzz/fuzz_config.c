/* fuzz_config.c - the INI configuration loader: any text gives either a
 * configuration or an error message naming a line; never a crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = xstrndup((const char *)data, size);
	struct config cfg;
	char err[512] = "";
	config_defaults(&cfg);
	if (config_load_string(&cfg, "fuzz.conf", text, err, sizeof(err)) < 0 &&
	    strncmp(err, "fuzz.conf", 9) != 0)
		abort();
	config_free(&cfg);
	free(text);
	return 0;
}
