/*
 * ldap_filter - expand an [ldap] filter template for one recipient
 *
 * See ldap_filter.h.  The recipient is hostile input: whatever bytes it
 * holds, the expansion can only ever produce an assertion value, never
 * filter syntax, because each byte that means something in a filter
 * (RFC 4515 section 3: '*', '(', ')', '\\', NUL) is written as "\XX".
 * Control and non-ASCII bytes are escaped too: the escaped form denotes
 * the same octets, and keeps log lines and packet dumps readable.
 */

#include <ctype.h>
#include <string.h>

#include "ldap_filter.h"

static const char hexdig[] = "0123456789abcdef";

/* need_escape - 1 if byte c must not appear raw in an assertion value */
static int need_escape(unsigned char c)
{
    return c == '*' || c == '(' || c == ')' || c == '\\' || c < 0x20
           || c >= 0x7f;
}

/* put_value - append n bytes of s escaped; -1 if out would overflow */
static int put_value(char *out, size_t outlen, size_t *pos,
                     const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];

        if (need_escape(c)) {
            if (outlen - *pos < 4)          /* 3 bytes + the final NUL */
                return -1;
            out[(*pos)++] = '\\';
            out[(*pos)++] = hexdig[c >> 4];
            out[(*pos)++] = hexdig[c & 15];
        } else {
            if (outlen - *pos < 2)
                return -1;
            out[(*pos)++] = (char) c;
        }
    }
    return 0;
}

int ldap_filter_expand(const char *tmpl, const struct address *a,
                       char *out, size_t outlen)
{
    size_t pos = 0;
    size_t full_len;

    if (outlen == 0)
        return LDAP_FILTER_ETOOLONG;
    full_len = strnlen(a->full, sizeof(a->full));
    for (const char *p = tmpl; *p; p++) {
        int rc = 0;

        if (*p != '%') {
            if (outlen - pos < 2)
                return LDAP_FILTER_ETOOLONG;
            out[pos++] = *p;
            continue;
        }
        switch (*++p) {
        case 's':
            rc = put_value(out, outlen, &pos, a->full, full_len);
            break;
        case 'u':
            rc = put_value(out, outlen, &pos, a->full,
                           a->local_len < full_len ? a->local_len : full_len);
            break;
        case 'd':
            rc = put_value(out, outlen, &pos, a->domain ? a->domain : "",
                           a->domain ? strlen(a->domain) : 0);
            break;
        case '%':
            if (outlen - pos < 2)
                return LDAP_FILTER_ETOOLONG;
            out[pos++] = '%';
            break;
        default:                /* includes the NUL after a trailing '%' */
            return LDAP_FILTER_EBADTMPL;
        }
        if (rc < 0)
            return LDAP_FILTER_ETOOLONG;
    }
    out[pos] = 0;
    return (int) pos;
}

int ldap_filter_check(const char *tmpl)
{
    int depth = 0;
    int subst = 0;

    for (const char *p = tmpl; *p; p++) {
        if (*p == '(') {
            depth++;
        } else if (*p == ')') {
            if (--depth < 0)
                return LDAP_FILTER_EPARENS;
        } else if (*p == '\\') {
            /* an escaped byte in the template's own text: \XX (RFC 4515) */
            if (!isxdigit((unsigned char) p[1]) || !isxdigit((unsigned char) p[2]))
                return LDAP_FILTER_EBADTMPL;
            p += 2;
        } else if (*p == '%') {
            p++;
            if (*p == 's' || *p == 'u' || *p == 'd')
                subst = 1;
            else if (*p != '%')
                return LDAP_FILTER_EBADTMPL;
        }
    }
    if (depth != 0)
        return LDAP_FILTER_EPARENS;
    if (!subst)
        return LDAP_FILTER_ENOSUBST;
    return 0;
}

const char *ldap_filter_strerror(int code)
{
    switch (code) {
    case 0:
        return "ok";
    case LDAP_FILTER_ETOOLONG:
        return "filter too long";
    case LDAP_FILTER_EBADTMPL:
        return "unknown % sequence (use %s, %u, %d or %%), or a '\\' "
               "not followed by two hex digits";
    case LDAP_FILTER_EPARENS:
        return "unbalanced parentheses";
    case LDAP_FILTER_ENOSUBST:
        return "no %s, %u or %d in the filter";
    default:
        return "unknown error";
    }
}
