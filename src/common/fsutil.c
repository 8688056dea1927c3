/* fsutil.c - mkdir -p and directory fsync. */
#include "common/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/xmalloc.h"

int mkdir_p(const char *path)
{
	char *copy = xstrdup(path);
	int rc = 0;
	for (char *p = copy + 1; rc == 0; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		if (mkdir(copy, 0700) == 0) {
			/* A directory just made must survive a power loss with
			 * what is put into it (the first message delivered). */
			if (fsync_parent(copy) < 0)
				rc = -1;
		} else if (errno != EEXIST) {
			rc = -1;
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	free(copy);
	return rc;
}

int mkdir_parents(const char *file)
{
	char *copy = xstrdup(file);
	int rc = mkdir_p(dirname(copy));
	free(copy);
	return rc;
}

int fsync_parent(const char *path)
{
	char *copy = xstrdup(path);
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}
