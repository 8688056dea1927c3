/* fsutil.h - small file-system helpers every writer of durable files needs. */
#ifndef PIGEON_FSUTIL_H
#define PIGEON_FSUTIL_H

/* mkdir -p with mode 0700 for every component created, each made durable
 * (its parent fsynced). 0 or -1 (errno). */
int mkdir_p(const char *path);
/* The same for the directories above a file. */
int mkdir_parents(const char *file);
/* fsync the directory holding path, so a rename or create there is durable. */
int fsync_parent(const char *path);

#endif
