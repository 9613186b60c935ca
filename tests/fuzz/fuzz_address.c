// FUZZ_SOURCES: policyd/address.c policyd/util.c policyd/log.c
// FUZZ_MAX_LEN: 2048
/*
 * fuzz_address - libFuzzer target for address.c
 *
 * Input: 1 flag byte, then a string (cut at the first NUL, as a C string
 * from proto would be).  Flag bits 0-1 pick the delimiter set, bits 2-7
 * the IPv4 prefix (% 34) and bits 4-7 the IPv6 prefix (from a table of
 * edges, some out of range) for addr_client_net().
 *
 * Checked with abort():
 *	- addr_normalize returns a documented code; on ADDR_OK the result is
 *	  NUL-terminated inside full, has '@' at local_len, domain points
 *	  after it, both parts are non-empty, no '@' or '"' or uppercase
 *	  ASCII in the domain, no control characters;
 *	- delimiters never change the result or its validity, only bare_len;
 *	- bare_len is where the first delimiter is, unless that is the first
 *	  character, there is none, or the local part is one Postfix does not
 *	  split (checked here with strcasecmp on a copy); addr_strip gives
 *	  full[0..bare_len) "@" domain, with nothing left to strip;
 *	- ignore_case gives the ASCII-lowercased result of case-keeping, and
 *	  the same bare_len (the delimiter sets here hold no letters);
 *	- normalizing a result again changes nothing (where the result has
 *	  no quote, no surrounding <> and no trailing dot to strip again);
 *	- addr_cidr_parse results are masked, in range, and match their own
 *	  address; addr_parse_ip + addr_client_net renders a network that
 *	  addr_cidr_parse reads back and that contains the address.
 */

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "../../policyd/address.h"

static const char *delim_sets[4] = {"", "+", "+-", "-_=."};
static const unsigned v6_prefixes[16] = {
    0, 1, 7, 8, 9, 32, 48, 56, 63, 64, 65, 96, 127, 128, 129, 255
};

static int is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static void check_ok(const struct address *a)
{
    const char *nul = memchr(a->full, '\0', ADDR_MAX);
    size_t  i, len;

    if (nul == NULL)
        abort();
    len = (size_t) (nul - a->full);
    if (a->local_len == 0 || a->local_len + 1 >= len)
        abort();
    if (a->full[a->local_len] != '@' || a->domain != a->full + a->local_len + 1)
        abort();
    if (strchr(a->domain, '@') != NULL || strchr(a->domain, '"') != NULL)
        abort();
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char) a->full[i];

        if (c < 0x20 || c == 0x7f)
            abort();
        if (i > a->local_len && is_upper((char) c))
            abort();
    }
}

static int rc_known(int rc)
{
    return rc == ADDR_OK || rc == ADDR_EMPTY || rc == ADDR_UNQUALIFIED
        || rc == ADDR_TOOLONG || rc == ADDR_BAD;
}

/* unsplittable - Postfix's reserved local parts, for the oracle */
static int unsplittable(const char *full, size_t llen, const char *delim)
{
    char    local[ADDR_MAX];

    memcpy(local, full, llen);
    local[llen] = '\0';
    if (strcasecmp(local, "postmaster") == 0
        || strcasecmp(local, "mailer-daemon") == 0
        || strcasecmp(local, "double-bounce") == 0)
        return 1;
    return strchr(delim, '-') != NULL
        && (strncasecmp(local, "owner-", 6) == 0
            || (llen > 8 && strcasecmp(local + llen - 8, "-request") == 0));
}

static void check_split(const struct address *a, const char *delim)
{
    struct address bare;
    size_t  first = strcspn(a->full, delim);

    if (*delim == '\0' || first == 0 || first >= a->local_len
        || unsplittable(a->full, a->local_len, delim)) {
        if (a->bare_len != a->local_len || addr_strip(a, &bare) != 0)
            abort();
        return;
    }
    if (a->bare_len != first || addr_strip(a, &bare) != 1)
        abort();
    check_ok(&bare);
    if (bare.local_len != first || bare.bare_len != first
        || memcmp(bare.full, a->full, first) != 0
        || strcmp(bare.domain, a->domain) != 0
        || addr_strip(&bare, &bare) != 0)
        abort();
}

static void fuzz_normalize(const char *s, const char *delim)
{
    struct address plain, cut, lower, again;
    int     rp, rc, rl, ra;
    size_t  i;

    rp = addr_normalize(s, "", 0, &plain);
    rc = addr_normalize(s, delim, 0, &cut);
    rl = addr_normalize(s, delim, 1, &lower);
    if (!rc_known(rp) || !rc_known(rc) || !rc_known(rl))
        abort();
    if (addr_strerror(rp) == NULL)
        abort();
    /* Case and delimiters never change whether an address is valid. */
    if (rp != rc || rc != rl)
        abort();
    if (rc != ADDR_OK)
        return;
    check_ok(&plain);
    check_ok(&cut);
    check_ok(&lower);
    if (strcmp(cut.full, plain.full) != 0 || cut.local_len != plain.local_len
        || plain.bare_len != plain.local_len)
        abort();
    check_split(&cut, delim);
    check_split(&lower, delim);
    if (strlen(lower.full) != strlen(cut.full) || lower.local_len != cut.local_len
        || lower.bare_len != cut.bare_len)
        abort();
    for (i = 0; cut.full[i] != '\0'; i++) {
        char    c = cut.full[i];

        if (is_upper(c))
            c = (char) (c - 'A' + 'a');
        if (lower.full[i] != c)
            abort();
    }

    /* Idempotence where nothing would be stripped or unquoted again. */
    {
        size_t  len = strlen(cut.full);

        if (strchr(cut.full, '"') == NULL
            && !(cut.full[0] == '<' && cut.full[len - 1] == '>')
            && cut.full[len - 1] != '.') {
            ra = addr_normalize(cut.full, delim, 0, &again);
            if (ra != ADDR_OK || strcmp(again.full, cut.full) != 0
                || again.local_len != cut.local_len
                || again.bare_len != cut.bare_len)
                abort();
        }
    }
}

static void check_cidr(const struct cidr *c)
{
    unsigned max = c->family == AF_INET ? 32 : 128;
    unsigned bit;

    if (c->family != AF_INET && c->family != AF_INET6)
        abort();
    if (c->prefix > max)
        abort();
    for (bit = c->prefix; bit < 128; bit++)
        if (c->addr[bit / 8] & (0x80 >> (bit % 8)))
            abort();
    if (addr_cidr_match(c, c->family, c->addr) != 1)
        abort();
    if (addr_cidr_match(c, c->family == AF_INET ? AF_INET6 : AF_INET,
                        c->addr) != 0)
        abort();
}

static void fuzz_ip(const char *s, unsigned v4p, unsigned v6p)
{
    struct cidr c, back;
    uint8_t addr[16];
    int     family;
    char    out[INET6_ADDRSTRLEN + 8], small[12];
    int     rc;

    if (addr_cidr_parse(s, &c) == 0)
        check_cidr(&c);
    if (addr_parse_ip(s, &family, addr) != 0)
        return;
    if (family == AF_INET) {
        uint8_t zero[12] = {0};

        if (memcmp(addr + 4, zero, 12) != 0)
            abort();
    } else if (family != AF_INET6) {
        abort();
    }
    rc = addr_client_net(family, addr, v4p, v6p, out, sizeof(out));
    if ((family == AF_INET ? v4p > 32 : v6p > 128) != (rc != 0))
        abort();
    if (rc == 0) {
        if (memchr(out, '\0', sizeof(out)) == NULL)
            abort();
        if (addr_cidr_parse(out, &back) != 0)
            abort();
        check_cidr(&back);
        if (back.family != family
            || back.prefix != (family == AF_INET ? v4p : v6p))
            abort();
        if (addr_cidr_match(&back, family, addr) != 1)
            abort();
    }
    /* A short output buffer: refused or NUL-terminated inside. */
    if (addr_client_net(family, addr, v4p, v6p, small, sizeof(small)) == 0
        && memchr(small, '\0', sizeof(small)) == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char   *s;
    uint8_t flags;

    if (size < 1)
        return 0;
    flags = data[0];
    s = malloc(size);
    if (s == NULL)
        abort();
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';

    fuzz_normalize(s, delim_sets[flags & 3]);
    /* Prefixes 0..33 for IPv4; for IPv6 the interesting edges. */
    fuzz_ip(s, (flags >> 2) % 34, v6_prefixes[(flags >> 4) & 15]);
    free(s);
    return 0;
}
