// FUZZ_SOURCES: backends/ldap_filter.c policyd/address.c policyd/util.c policyd/log.c
// FUZZ_MAX_LEN: 2048
/*
 * fuzz_ldap_filter - libFuzzer target for ldap_filter.c
 *
 * Input: 1 flag byte, then data.  Flag bit 0 picks the mode:
 *   0: data is a recipient; addr_normalize() it (delimiter "+") and
 *      expand a fixed template (bits 1-2 pick it) with the result;
 *   1: data is split at the first 0xff byte into a template and raw
 *      address bytes (any byte but NUL), local_len from bits 1-7, so bytes
 *      the normalizer would refuse reach the escaper too.
 *
 * Checked with abort():
 *   - the result is NUL-terminated at the returned length, below outlen;
 *   - outside the template's own text every '(' ')' '*' is escaped: the
 *     output has exactly as many raw parentheses and '*' as the template
 *     (a recipient can never add filter syntax);
 *   - every backslash in a substituted value starts "\XX", and decoding
 *     the expansion of "%s" gives back the address bytes exactly;
 *   - a template that ldap_filter_check() accepts never gets EBADTMPL;
 *   - a smaller buffer only ever gives ETOOLONG, never a cut escape.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../backends/ldap_filter.h"

static const char *templates[4] = {
    "(mail=%s)",
    "(|(mail=%s)(mailLocalAddress=%s))",
    "(&(objectClass=user)(proxyAddresses=smtp:%s))",
    "(&(uid=%u)(associatedDomain=%d)(x=100%%))",
};

static size_t count_meta(const char *s, size_t n)
{
    size_t c = 0;

    for (size_t i = 0; i < n; i++)
        if (s[i] == '(' || s[i] == ')' || s[i] == '*')
            c++;
    return c;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void check_roundtrip(const struct address *a)
{
    static char out[LDAP_FILTER_MAX * 2];
    char dec[ADDR_MAX];
    size_t j = 0;
    int n = ldap_filter_expand("%s", a, out, sizeof(out));

    if (n < 0 || out[n] != 0)
        abort();
    for (int i = 0; i < n; i++) {
        if (out[i] == '(' || out[i] == ')' || out[i] == '*')
            abort();
        if (out[i] == '\\') {
            int hi, lo;

            if (i + 2 >= n)
                abort();
            hi = hexval(out[i + 1]);
            lo = hexval(out[i + 2]);
            if (hi < 0 || lo < 0)
                abort();
            dec[j++] = (char) (hi * 16 + lo);
            i += 2;
        } else {
            dec[j++] = out[i];
        }
        if (j >= sizeof(dec))
            abort();
    }
    if (j != strlen(a->full) || memcmp(dec, a->full, j) != 0)
        abort();
}

static void check_expand(const char *tmpl, const struct address *a)
{
    static char out[LDAP_FILTER_MAX * 4];
    int ok_tmpl = ldap_filter_check(tmpl) == 0;
    int n = ldap_filter_expand(tmpl, a, out, sizeof(out));

    if (n == LDAP_FILTER_EBADTMPL) {
        if (ok_tmpl)
            abort();
        return;
    }
    if (n == LDAP_FILTER_ETOOLONG)
        return;
    if (n < 0 || (size_t) n >= sizeof(out) || out[n] != 0)
        abort();
    if (count_meta(out, (size_t) n) != count_meta(tmpl, strlen(tmpl)))
        abort();
    /* a smaller buffer: exact fit works, one less is ETOOLONG */
    {
        static char small[LDAP_FILTER_MAX * 4];

        if (ldap_filter_expand(tmpl, a, small, (size_t) n + 1) != n
            || memcmp(small, out, (size_t) n + 1) != 0)
            abort();
        if (ldap_filter_expand(tmpl, a, small, (size_t) n) != LDAP_FILTER_ETOOLONG)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct address a;
    char buf[2048 + 1];

    if (size < 1 || size > 2048)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;

    if ((data[0] & 1) == 0) {
        if (addr_normalize(buf, "+", 0, &a) != ADDR_OK)
            return 0;
        check_roundtrip(&a);
        check_expand(templates[(data[0] >> 1) & 3], &a);
        return 0;
    }

    /* raw mode: TEMPLATE 0xff ADDRESSBYTES */
    {
        char *sep = memchr(buf, 0xff, size - 1);
        const char *tmpl = "(mail=%s)";
        char *raw = buf;
        size_t rlen, llen;

        if (sep) {
            *sep = 0;
            tmpl = buf;
            raw = sep + 1;
        }
        rlen = strlen(raw);
        if (rlen + 2 > ADDR_MAX)
            return 0;
        llen = (size_t) (data[0] >> 1) % (rlen + 1);
        memset(&a, 0, sizeof(a));
        memcpy(a.full, raw, llen);
        a.full[llen] = '@';
        memcpy(a.full + llen + 1, raw + llen, rlen - llen);
        a.full[rlen + 1] = 0;
        a.local_len = llen;
        a.domain = a.full + llen + 1;
        check_roundtrip(&a);
        if (strlen(tmpl) < 512)
            check_expand(tmpl, &a);
    }
    return 0;
}
