#ifndef POLICYD_ADDRESS_H
#define POLICYD_ADDRESS_H

/*
 * address - recipient normalization and client networks
 *
 * addr_normalize() turns what Postfix sent as recipient= into the form the
 * directory is asked about: surrounding <> removed, a quoted local part
 * unquoted (RFC 5321 quoting is transport, not identity; Postfix's internal
 * form is unquoted too), the address extension after the first recipient
 * delimiter removed (not when the local part would become empty), the domain
 * lowercased, and the local part lowercased when ignore_case is set.
 *
 * addr_client_net() maps a client IP address to its network key, e.g.
 * "192.0.2.0/24" or "2001:db8::/64"; addr_cidr_* parse and match
 * whitelists.  Pure functions, no allocation.
 */

#include <stddef.h>
#include <stdint.h>

#define ADDR_MAX 512            /* local@domain after normalization */

struct address {
    char full[ADDR_MAX];        /* "local@domain" */
    size_t local_len;           /* full[0..local_len) is the local part */
    const char *domain;         /* points into full, after '@' */
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
