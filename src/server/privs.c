/* privs.c - setgroups/setgid/setuid, in that order, and a check. */
#include "server/privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

int privs_drop(const char *user, const char *group, char *err, size_t errlen)
{
	if (geteuid() != 0)
		return 0;
	if (user[0] == '\0') {
		snprintf(err, errlen, "started as root and [server] user is empty: refusing to "
				      "serve clients as root");
		return -1;
	}
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		snprintf(err, errlen, "[server] user %s does not exist", user);
		return -1;
	}
	gid_t gid = pw->pw_gid;
	if (group[0] != '\0') {
		struct group *gr = getgrnam(group);
		if (gr == NULL) {
			snprintf(err, errlen, "[server] group %s does not exist", group);
			return -1;
		}
		gid = gr->gr_gid;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen, "[server] user %s is root: refusing to serve clients as root",
			 user);
		return -1;
	}
	if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(pw->pw_uid) < 0) {
		snprintf(err, errlen, "cannot switch to user %s: %s", user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0 || geteuid() == 0) {
		snprintf(err, errlen, "could regain root after dropping privileges");
		return -1;
	}
	return 0;
}
