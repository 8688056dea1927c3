/* fetch_cmd.h - `pigeon fetch`: options, accounts, output, exit status. */
#ifndef PIGEON_FETCH_CMD_H
#define PIGEON_FETCH_CMD_H

int cmd_fetch(int argc, char **argv);

#endif
