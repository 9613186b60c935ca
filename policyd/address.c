/*
 * address - recipient normalization and client networks
 *
 * SYNOPSIS
 *	int addr_normalize(rcpt, delimiters, ignore_case, out)
 *	const char *addr_strerror(code)
 *	int addr_strip(a, out)
 *	int addr_parse_ip(s, family, addr)
 *	int addr_client_net(family, addr, v4prefix, v6prefix, out, outlen)
 *	int addr_cidr_parse(s, cidr)
 *	int addr_cidr_match(cidr, family, addr)
 *
 * DESCRIPTION
 *	addr_normalize() turns a recipient= value into "local@domain" as
 *	the directory is asked about it, in this order:
 *
 *	1. one pair of surrounding <> is removed; nothing left -> ADDR_EMPTY.
 *	2. a control character (< 0x20 or 0x7f) anywhere -> ADDR_BAD.  Bytes
 *	   >= 0x80 pass (SMTPUTF8).
 *	3. the last '@' outside double quotes splits local part and domain.
 *	   Inside quotes a backslash escapes the next character.  An
 *	   unbalanced quote, or a quote in the domain -> ADDR_BAD.  No '@',
 *	   or an empty local part or domain -> ADDR_UNQUALIFIED.
 *	4. the local part is unquoted: quote characters are dropped and
 *	   "\x" inside quotes becomes "x" ("john doe"@x -> john doe@x, which
 *	   is also Postfix's internal form).  Outside quotes a backslash is
 *	   an ordinary character.
 *	5. a result longer than ADDR_MAX - 1 -> ADDR_TOOLONG.  The
 *	   extension counts: the address is asked with it first.
 *	6. the local part is lowercased when ignore_case is set; one
 *	   trailing '.' of the domain is removed and the domain lowercased
 *	   (ASCII only; no locale).
 *	7. bare_len is set where the extension starts, by Postfix's rules
 *	   (see address.h), on the folded local part.
 *
 *	addr_strip() copies the local part up to bare_len and the domain.
 *
 *	addr_parse_ip() accepts a dotted quad or an IPv6 address without
 *	brackets.  An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is returned as
 *	IPv4, as Postfix does, so such clients are not all lumped into one
 *	IPv6 /64 by the harvest counters.
 *
 *	addr_client_net() renders the masked address and prefix, e.g.
 *	"192.0.2.0/24", the address as inet_ntop() writes it (but without
 *	printf: every request renders one or two).  addr_cidr_parse() takes "addr/prefix" or a bare
 *	address and stores the address masked; addr_cidr_match() returns 1
 *	when family and the first prefix bits agree, else 0.
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "address.h"
#include "util.h"

static int addr_is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

static char addr_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char) (c - 'A' + 'a') : c;
}

/* addr_is_delim - c is one of delimiters (either case with ignore_case) */
static int addr_is_delim(char c, const char *delimiters, int ignore_case)
{
    for (; *delimiters; delimiters++) {
        if (*delimiters == c
            || (ignore_case && addr_lower(*delimiters) == c))
            return 1;
    }
    return 0;
}

/* addr_equal_nocase - s[0..n) is word, ASCII case-insensitively */
static int addr_equal_nocase(const char *s, size_t n, const char *word)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (word[i] == '\0' || addr_lower(s[i]) != word[i])
            return 0;
    }
    return word[n] == '\0';
}

/*
 * addr_bare_len - where the extension of local[0..len) starts, or len when
 * Postfix's split_addr() would not split it (the rules in address.h).
 */
static size_t addr_bare_len(const char *local, size_t len,
                            const char *delimiters, int ignore_case)
{
    static const size_t req_len = sizeof("-request") - 1;
    static const size_t own_len = sizeof("owner-") - 1;
    size_t  i;

    if (delimiters == NULL || *delimiters == '\0')
        return len;
    if (addr_equal_nocase(local, len, "postmaster")
        || addr_equal_nocase(local, len, "mailer-daemon")
        || addr_equal_nocase(local, len, "double-bounce"))
        return len;
    if (strchr(delimiters, '-') != NULL) {
        if (len >= own_len && addr_equal_nocase(local, own_len, "owner-"))
            return len;
        if (len > req_len
            && addr_equal_nocase(local + len - req_len, req_len, "-request"))
            return len;
    }
    for (i = 0; i < len; i++) {
        if (addr_is_delim(local[i], delimiters, ignore_case))
            break;
    }
    return i == 0 ? len : i;        /* no empty local part; i == len: none */
}

int addr_normalize(const char *rcpt, const char *delimiters, int ignore_case,
                   struct address *out)
{
    const char *s;
    const char *at = NULL;
    size_t  len, i, dlen, llen;
    int     inq = 0;

    out->full[0] = '\0';
    out->local_len = 0;
    out->bare_len = 0;
    out->domain = out->full;

    if (rcpt == NULL)
        return ADDR_EMPTY;
    s = rcpt;
    len = strlen(s);
    if (len >= 2 && s[0] == '<' && s[len - 1] == '>') {
        s++;
        len -= 2;
    }
    if (len == 0)
        return ADDR_EMPTY;

    /* Validate the whole input before anything is copied. */
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];

        if (addr_is_ctl(c))
            return ADDR_BAD;
        if (inq) {
            if (c == '\\') {
                if (++i >= len || addr_is_ctl((unsigned char) s[i]))
                    return ADDR_BAD;
            } else if (c == '"') {
                inq = 0;
            }
        } else if (c == '"') {
            inq = 1;
        } else if (c == '@') {
            at = s + i;
        }
    }
    if (inq)
        return ADDR_BAD;
    if (at == NULL)
        return ADDR_UNQUALIFIED;
    dlen = len - (size_t) (at - s) - 1;
    if (memchr(at + 1, '"', dlen) != NULL)
        return ADDR_BAD;
    if (dlen > 0 && at[dlen] == '.')            /* at[dlen] is the last byte */
        dlen--;
    if (dlen == 0)
        return ADDR_UNQUALIFIED;

    /* Unquote the local part into out->full; past the buffer's end only
     * count, so that "too long" is told from "empty". */
    llen = 0;
    inq = 0;
    for (i = 0; s + i < at; i++) {
        char    c = s[i];

        if (c == '"') {
            inq = !inq;
            continue;
        }
        if (inq && c == '\\')
            c = s[++i];                         /* validated above */
        if (llen < ADDR_MAX)
            out->full[llen] = c;
        llen++;
    }
    if (llen == 0)
        return ADDR_UNQUALIFIED;
    if (llen + 1 + dlen > ADDR_MAX - 1) {
        out->full[0] = '\0';
        return ADDR_TOOLONG;
    }
    if (ignore_case) {
        for (i = 0; i < llen; i++)
            out->full[i] = addr_lower(out->full[i]);
    }
    out->full[llen] = '@';
    for (i = 0; i < dlen; i++)
        out->full[llen + 1 + i] = addr_lower(at[1 + i]);
    out->full[llen + 1 + dlen] = '\0';
    out->local_len = llen;
    out->bare_len = addr_bare_len(out->full, llen, delimiters, ignore_case);
    out->domain = out->full + llen + 1;
    return ADDR_OK;
}

int addr_strip(const struct address *a, struct address *out)
{
    size_t  dlen;

    if (a->bare_len >= a->local_len)
        return 0;
    dlen = strlen(a->domain);
    memcpy(out->full, a->full, a->bare_len);
    out->full[a->bare_len] = '@';
    memcpy(out->full + a->bare_len + 1, a->domain, dlen + 1);
    out->local_len = out->bare_len = a->bare_len;
    out->domain = out->full + a->bare_len + 1;
    return 1;
}

const char *addr_strerror(int code)
{
    switch (code) {
    case ADDR_OK:
        return "ok";
    case ADDR_EMPTY:
        return "empty address";
    case ADDR_UNQUALIFIED:
        return "address without local part or domain";
    case ADDR_TOOLONG:
        return "address too long";
    case ADDR_BAD:
        return "malformed address";
    default:
        return "unknown address error";
    }
}

static const uint8_t addr_v4mapped[12] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

/* parse_ipv4 - a dotted quad as inet_pton(AF_INET) takes it (four
 * decimal octets of at most 255, no leading zeros, nothing else): 0 and
 * out[0..4), or -1.  Its own: most clients are IPv4, and every request
 * parses one. */
static int parse_ipv4(const char *s, uint8_t out[4])
{
    unsigned octets = 0, v = 0;
    int     digits = 0;

    for (;; s++) {
        if (*s >= '0' && *s <= '9') {
            if (digits && v == 0)               /* a leading zero */
                return -1;
            v = v * 10 + (unsigned) (*s - '0');
            if (v > 255)
                return -1;
            digits = 1;
        } else if ((*s == '.' || *s == '\0') && digits && octets < 4) {
            out[octets++] = (uint8_t) v;
            if (*s == '\0')
                return octets == 4 ? 0 : -1;
            v = 0;
            digits = 0;
        } else {
            return -1;
        }
    }
}

int addr_parse_ip(const char *s, int *family, uint8_t addr[16])
{
    uint8_t buf[16];

    memset(buf, 0, sizeof(buf));
    if (parse_ipv4(s, buf) == 0) {
        *family = AF_INET;
    } else if (inet_pton(AF_INET6, s, buf) == 1) {
        if (memcmp(buf, addr_v4mapped, sizeof(addr_v4mapped)) == 0) {
            memmove(buf, buf + 12, 4);
            memset(buf + 4, 0, 12);
            *family = AF_INET;
        } else {
            *family = AF_INET6;
        }
    } else {
        return -1;
    }
    memcpy(addr, buf, 16);
    return 0;
}

/* addr_mask - keep the first prefix bits of addr[0..bytes) */
static void addr_mask(uint8_t *addr, size_t bytes, unsigned prefix)
{
    size_t  i;

    for (i = 0; i < bytes; i++) {
        if (prefix >= 8) {
            prefix -= 8;
        } else {
            addr[i] &= (uint8_t) (0xff00u >> prefix);
            prefix = 0;
        }
    }
}

/* ipv4_text - dotted quad of a[0..4) at text (INET_ADDRSTRLEN); its
 * length.  Without printf (inet_ntop's): this runs for every request. */
static size_t ipv4_text(const uint8_t *a, char *text)
{
    size_t  n = 0;
    int     i;

    for (i = 0; i < 4; i++) {
        unsigned v = a[i];

        if (v >= 100)
            text[n++] = (char) ('0' + v / 100);
        if (v >= 10)
            text[n++] = (char) ('0' + v / 10 % 10);
        text[n++] = (char) ('0' + v % 10);
        text[n++] = '.';
    }
    text[--n] = '\0';
    return n;
}

/* ipv6_text - a[0..16) as inet_ntop(AF_INET6) writes it (lowercase hex,
 * the first longest run of two or more zero words as "::", the IPv4
 * forms ::a.b.c.d and ::ffff:a.b.c.d) at text (INET6_ADDRSTRLEN); its
 * length.  Without printf, for the same reason as ipv4_text. */
static size_t ipv6_text(const uint8_t *a, char *text)
{
    static const char hex[] = "0123456789abcdef";
    unsigned w[8];
    int     i, run = -1, runlen = 0;
    size_t  n = 0;

    for (i = 0; i < 8; i++)
        w[i] = (unsigned) a[2 * i] << 8 | a[2 * i + 1];
    for (i = 0; i < 8;) {
        int     j = i;

        while (j < 8 && w[j] == 0)
            j++;
        if (j - i > runlen && j - i >= 2) {
            run = i;
            runlen = j - i;
        }
        i = j > i ? j : i + 1;
    }
    for (i = 0; i < 8; i++) {
        if (i == run) {
            text[n++] = ':';
            if (i + runlen == 8)
                text[n++] = ':';
            i += runlen - 1;
            continue;
        }
        if (i)
            text[n++] = ':';
        if (i == 6 && run == 0 && (runlen == 6 || (runlen == 5 && w[5] == 0xffff)))
            return n + ipv4_text(a + 12, text + n);
        for (int shift = 12; shift >= 0; shift -= 4)
            if ((w[i] >> shift) || shift == 0)
                text[n++] = hex[(w[i] >> shift) & 15];
    }
    text[n] = '\0';
    return n;
}

int addr_client_net(int family, const uint8_t addr[16], unsigned v4prefix,
                    unsigned v6prefix, char *out, size_t outlen)
{
    uint8_t buf[16];
    char    text[INET6_ADDRSTRLEN];
    char    num[UTIL_FMT_U_MAX];
    unsigned prefix;
    size_t  bytes, tlen, nlen;

    if (family == AF_INET) {
        prefix = v4prefix;
        bytes = 4;
    } else if (family == AF_INET6) {
        prefix = v6prefix;
        bytes = 16;
    } else {
        return -1;
    }
    if (prefix > bytes * 8)
        return -1;
    memcpy(buf, addr, 16);
    addr_mask(buf, bytes, prefix);
    tlen = family == AF_INET ? ipv4_text(buf, text) : ipv6_text(buf, text);
    nlen = util_fmt_u(num, prefix);
    if (tlen + 1 + nlen >= outlen)
        return -1;
    memcpy(out, text, tlen);
    out[tlen] = '/';
    memcpy(out + tlen + 1, num, nlen + 1);
    return 0;
}

int addr_cidr_parse(const char *s, struct cidr *out)
{
    char    host[INET6_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t  hlen = slash ? (size_t) (slash - s) : strlen(s);
    unsigned prefix = 0, max;
    size_t  i;

    if (hlen == 0 || hlen >= sizeof(host))
        return -1;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }
    if (slash == NULL) {
        prefix = max;
    } else {
        const char *p = slash + 1;

        /* At most three digits: nothing else, no sign, no blanks. */
        for (i = 0; p[i] != '\0'; i++) {
            if (p[i] < '0' || p[i] > '9' || i >= 3)
                return -1;
            prefix = prefix * 10 + (unsigned) (p[i] - '0');
        }
        if (i == 0 || prefix > max)
            return -1;
    }
    out->prefix = prefix;
    addr_mask(out->addr, max / 8, prefix);
    return 0;
}

int addr_cidr_match(const struct cidr *c, int family, const uint8_t *addr)
{
    unsigned full, rest;

    if (c->family != family)
        return 0;
    if (c->prefix > (family == AF_INET ? 32u : 128u))
        return 0;
    full = c->prefix / 8;
    rest = c->prefix % 8;
    if (memcmp(c->addr, addr, full) != 0)
        return 0;
    if (rest != 0) {
        uint8_t mask = (uint8_t) (0xff00u >> rest);

        if ((c->addr[full] & mask) != (addr[full] & mask))
            return 0;
    }
    return 1;
}
