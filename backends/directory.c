/*
 * directory - choose the directory backend (see directory.h)
 */

#include "directory.h"

#include <stdio.h>
#include <string.h>

#include "dir_file.h"
#include "dir_ldap.h"

struct directory *directory_new(uv_loop_t *loop, const struct config *cfg,
                                char *err, size_t errlen)
{
    if (strcmp(cfg->directory.backend, "file") == 0)
        return dir_file_new(cfg, err, errlen);
    if (strcmp(cfg->directory.backend, "ldap") == 0)
        return dir_ldap_new(loop, cfg, err, errlen);
    snprintf(err, errlen, "[directory] backend: unknown backend '%s'",
             cfg->directory.backend);
    return NULL;
}

const char *directory_status_str(enum dir_status st)
{
    switch (st) {
    case DIR_FOUND:
        return "found";
    case DIR_NOTFOUND:
        return "not found";
    case DIR_TEMPFAIL:
        return "temporary failure";
    }
    return "?";
}
