#ifndef BACKENDS_LDAP_FILTER_H
#define BACKENDS_LDAP_FILTER_H

/*
 * ldap_filter - expand an [ldap] filter template for one recipient
 *
 * ldap_filter_expand() copies the template tmpl into out, replacing
 *
 *   %s   the normalized address being asked (local@domain): the
 *        recipient with its extension, and on a second search the one
 *        without it (address.h, addr_strip)
 *   %u   that form's local part
 *   %d   the domain
 *   %%   a literal '%'
 *
 * Every substituted byte that RFC 4515 requires to be escaped in an
 * assertion value ('*', '(', ')', '\\', NUL), and every control or
 * non-ASCII byte besides, is written as a backslash and two hex digits, so
 * no recipient can change the structure of the filter ("*)(mail=*" is
 * searched for literally).  The template itself is trusted text from the
 * configuration and is copied unchanged.
 *
 * Returns the length written (out is NUL-terminated), or a negative code:
 * LDAP_FILTER_ETOOLONG when the result (with its NUL) exceeds outlen,
 * LDAP_FILTER_EBADTMPL when the template has '%' followed by anything but
 * s, u, d or %.  Pure function, no allocation.
 */

#include <stddef.h>

#include "../policyd/address.h"

#define LDAP_FILTER_MAX 4096        /* longest filter we ever send */

enum {
    LDAP_FILTER_ETOOLONG = -1,
    LDAP_FILTER_EBADTMPL = -2,      /* '%' + unknown character; bad \\XX */
    LDAP_FILTER_EPARENS = -3,       /* unbalanced parentheses */
    LDAP_FILTER_ENOSUBST = -4,      /* no %s, %u or %d: same for everyone */
};

int ldap_filter_expand(const char *tmpl, const struct address *a,
                       char *out, size_t outlen);

/* ldap_filter_check - 0 if tmpl is a usable template (only known %
 * sequences, at least one of %s %u %d, balanced parentheses), else a
 * negative code; for configuration checks. */
int ldap_filter_check(const char *tmpl);

const char *ldap_filter_strerror(int code);

#endif
