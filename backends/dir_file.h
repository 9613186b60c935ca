#ifndef BACKENDS_DIR_FILE_H
#define BACKENDS_DIR_FILE_H

/*
 * dir_file - the embedded recipient list
 *
 * One address per line; blank lines and lines starting with '#' are
 * ignored; "@domain" accepts every local part in that domain (catch-all).
 * Entries are normalized like recipients (addr_normalize with the same
 * case setting) and kept whole, extension included, like the keys of a
 * Postfix table: "Bob+x@Example.COM" is "bob+x@example.com" (with
 * ignore_case).  A lookup answers for the form it is given, or the domain's
 * catch-all; asking the address without its extension as well is the
 * chain's work (policyd/lookup.c), so "first-last@" is found when listed,
 * and "alice+news@" when "alice@" is.
 * The whole file is read into a hash table when the directory is created;
 * a line that is not an address fails the load with "file:line: why", so
 * a reload with a broken file keeps the running table.  Lookups answer
 * synchronously.
 */

#include <stddef.h>

#include "directory.h"

struct directory *dir_file_new(const struct config *cfg, char *err, size_t errlen);

#endif
