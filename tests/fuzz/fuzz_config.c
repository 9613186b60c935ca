// FUZZ_SOURCES: policyd/config.c policyd/config_keys.c policyd/config_check.c policyd/util.c policyd/log.c policyd/address.c backends/ldap_filter.c
// FUZZ_MAX_LEN: 4096
/*
 * fuzz_config - libFuzzer target for config_load() and config_free()
 *
 * The input is written to one temporary file (made once, rewritten for
 * every input, removed at exit) and loaded.  ASan's leak checker catches
 * anything config_load() or config_free() forgets to free, on success and
 * on every error path.  Checked with abort():
 *	- a failure leaves a non-empty, NUL-terminated message in err with no
 *	  control characters (config.c escapes quoted values);
 *	- a success has the path it was given, a 16-hex-digit directory
 *	  digest, non-NULL list items, and the same digest when the same
 *	  file is loaded a second time.
 *
 * The file is created under $TMPDIR (run.sh points that at its own
 * temporary directory).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../policyd/config.h"
#include "../../policyd/log.h"

static char cfg_path[4096];
static int cfg_fd = -1;

static void cleanup(void)
{
    if (cfg_fd >= 0) {
        close(cfg_fd);
        unlink(cfg_path);
        cfg_fd = -1;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");

    (void) argc;
    (void) argv;
    if (tmp == NULL || *tmp == '\0')
        tmp = "/tmp";
    snprintf(cfg_path, sizeof(cfg_path), "%s/policyd-fuzz-config-XXXXXX", tmp);
    cfg_fd = mkstemp(cfg_path);
    if (cfg_fd < 0) {
        perror(cfg_path);
        abort();
    }
    atexit(cleanup);
    log_init("fuzz_config", 0, LOG_LVL_ERR);
    return 0;
}

static void check_list(const struct strlist *l)
{
    size_t  i;

    if (l->n > 0 && l->v == NULL)
        abort();
    for (i = 0; i < l->n; i++)
        if (l->v[i] == NULL)
            abort();
}

static void check_cfg(const struct config *cfg)
{
    const char *d = config_directory_digest(cfg);
    size_t  i;

    if (cfg->path == NULL || strcmp(cfg->path, cfg_path) != 0)
        abort();
    if (d == NULL || strlen(d) != 16)
        abort();
    for (i = 0; i < 16; i++)
        if (!((d[i] >= '0' && d[i] <= '9') || (d[i] >= 'a' && d[i] <= 'f')))
            abort();
    check_list(&cfg->server.listen);
    check_list(&cfg->directory.domains);
    check_list(&cfg->ldap.uri);
    check_list(&cfg->redis.sentinels);
    check_list(&cfg->harvest.whitelist);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char    err[512];
    struct config *cfg, *again;
    size_t  i;

    if (ftruncate(cfg_fd, 0) != 0)
        abort();
    if (size > 0 && pwrite(cfg_fd, data, size, 0) != (ssize_t) size)
        abort();

    memset(err, 'X', sizeof(err));
    cfg = config_load(cfg_path, err, sizeof(err));
    if (cfg == NULL) {
        const char *nul = memchr(err, '\0', sizeof(err));

        if (nul == NULL || nul == err) {
            fprintf(stderr, "fuzz_config: error message empty or unterminated\n");
            abort();
        }
        for (i = 0; err + i < nul; i++) {
            if ((unsigned char) err[i] < 0x20 || err[i] == 0x7f) {
                fprintf(stderr, "fuzz_config: control character 0x%02x at "
                        "offset %zu of the error message: ", err[i], i);
                for (i = 0; err + i < nul; i++)
                    fprintf(stderr, (unsigned char) err[i] < 0x20
                            || (unsigned char) err[i] >= 0x7f ? "\\x%02x" : "%c",
                            (unsigned char) err[i]);
                fprintf(stderr, "\n");
                abort();
            }
        }
        return 0;
    }
    check_cfg(cfg);
    again = config_load(cfg_path, err, sizeof(err));
    if (again == NULL)
        abort();
    if (strcmp(config_directory_digest(cfg),
               config_directory_digest(again)) != 0)
        abort();
    config_free(again);
    config_free(cfg);
    return 0;
}
