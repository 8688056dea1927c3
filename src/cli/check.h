/* check.h - `pigeon check`: load a configuration and everything it names
 * (passwd-file, certificates and keys, the service user, the mail location)
 * and report each problem precisely. */
#ifndef PIGEON_CHECK_H
#define PIGEON_CHECK_H

#include <stdio.h>

/* 0 if everything is usable; -1 after printing every problem found to err. */
int check_config(const char *path, FILE *out, FILE *err);

#endif
