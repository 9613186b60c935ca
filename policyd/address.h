#ifndef POLICYD_ADDRESS_H
#define POLICYD_ADDRESS_H

/*
 * address - recipient normalization and client networks
 *
 * addr_normalize() turns what Postfix sent as recipient= into the form the
 * directory is asked about first: surrounding <> removed, a quoted local
 * part unquoted (RFC 5321 quoting is transport, not identity; Postfix's
 * internal form is unquoted too), the domain lowercased, and the local part
 * lowercased when ignore_case is set.  The address extension is kept in
 * full; bare_len marks where it starts, and addr_strip() gives the address
 * without it, the form asked second (Postfix's table lookups do the same:
 * user+ext@domain, then user@domain).
 *
 * Where the extension starts mirrors Postfix's split_addr() with
 * owner_request_special = yes and double_bounce_sender = double-bounce:
 *   - never for the local parts postmaster, mailer-daemon and double-bounce
 *     (ASCII case-insensitive);
 *   - never, when '-' is one of the delimiters, for a local part that starts
 *     with "owner-" or that ends with "-request" with something before it
 *     (case-insensitive);
 *   - otherwise at the first character that is one of the delimiters,
 *     unless that is the first character of the local part or there is
 *     none.  A delimiter that is the last character does split: "bob+@x"
 *     is asked as "bob+@x", then "bob@x".
 * One difference, so that the split is a function of the normalized
 * address (cache keys are normalized addresses): with ignore_case a letter
 * delimiter matches either case, since the local part is compared folded.
 *
 * addr_client_net() maps a client IP address to its network key, e.g.
 * "192.0.2.0/24" or "2001:db8::/64"; addr_cidr_* parse and match
 * whitelists.  Pure functions, no allocation.
 */

#include <stddef.h>
#include <stdint.h>

#define ADDR_MAX 512            /* local@domain after normalization */

struct address {
    char full[ADDR_MAX];        /* "local@domain", extension included */
    size_t local_len;           /* full[0..local_len) is the local part */
    const char *domain;         /* points into full, after '@' */
    size_t bare_len;            /* full[0..bare_len) is the local part
                                 * without its extension; == local_len
                                 * when there is no extension to strip */
};

enum {
    ADDR_OK = 0,
    ADDR_EMPTY = -1,            /* "" or "<>" */
    ADDR_UNQUALIFIED = -2,      /* no '@domain' */
    ADDR_TOOLONG = -3,
    ADDR_BAD = -4,              /* unbalanced quotes, control characters */
};

int addr_normalize(const char *rcpt, const char *delimiters, int ignore_case,
                   struct address *out);
const char *addr_strerror(int code);

/* addr_strip - the address without its extension, as an address of its own
 * (with nothing left to strip).  Returns 1 and fills out, or 0 (out
 * untouched) when a has no extension. */
int addr_strip(const struct address *a, struct address *out);

struct cidr {
    int family;                 /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
};

/* "192.0.2.0/24", "2001:db8::/32" or a bare address (full length). */
int addr_cidr_parse(const char *s, struct cidr *out);
/* 1 when family matches and the first prefix bits agree, else 0. */
int addr_cidr_match(const struct cidr *c, int family, const uint8_t *addr);

/* Parse an IP address as Postfix sends it (IPv6 without brackets).
 * Returns 0 and fills family/addr (16 bytes), or -1. */
int addr_parse_ip(const char *s, int *family, uint8_t addr[16]);

/* addr_client_net - network key of an address, masked to the prefix.
 * Returns 0, or -1 for an unknown family, a prefix longer than the address,
 * or an out buffer too small. */
int addr_client_net(int family, const uint8_t addr[16], unsigned v4prefix,
                    unsigned v6prefix, char *out, size_t outlen);

#endif
