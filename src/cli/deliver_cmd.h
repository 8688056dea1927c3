/* deliver_cmd.h - `pigeon deliver`: a local delivery agent for an MTA's
 * mailbox_command or pipe transport. Exit codes are sysexits(3). */
#ifndef PIGEON_DELIVER_CMD_H
#define PIGEON_DELIVER_CMD_H

int cmd_deliver(int argc, char **argv);

#endif
