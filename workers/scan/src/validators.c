/*
 * validators.c - the checks of validators.h. Pure functions over the
 * candidate's bytes: no allocation, nothing read outside [s, s + n).
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "validators.h"

int vs_validator_parse(const char *name, enum vs_validator *out)
{
    static const struct {
        const char *name;
        enum vs_validator v;
    } names[] = {{"luhn", VS_VALID_LUHN}, {"ssn", VS_VALID_SSN}, {"iban", VS_VALID_IBAN},
                 {"jwt", VS_VALID_JWT}, {"entropy", VS_VALID_ENTROPY}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].v;
            return 0;
        }
    }
    return -EINVAL;
}

bool vs_valid_luhn(const uint8_t *s, size_t n)
{
    unsigned sum = 0, digits = 0;
    for (size_t i = n; i-- > 0;) {
        if (s[i] == ' ' || s[i] == '-')
            continue;
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (digits++ % 2 == 1)
            d = d * 2 > 9 ? d * 2 - 9 : d * 2;
        sum += d;
    }
    return digits >= 12 && digits <= 19 && sum % 10 == 0;
}

/* The number formed by the ASCII digits s[0..n) (all digits). */
static unsigned digits_value(const uint8_t *s, size_t n)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned)(s[i] - '0');
    return v;
}

bool vs_valid_ssn(const uint8_t *s, size_t n)
{
    uint8_t d[9];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '-' || s[i] == ' ')
            continue;
        if (s[i] < '0' || s[i] > '9' || k == sizeof d)
            return false;
        d[k++] = s[i];
    }
    if (k != 9)
        return false;
    unsigned area = digits_value(d, 3), group = digits_value(d + 3, 2), serial = digits_value(d + 5, 4);
    /* The SSA never issues area 000, 666 or 900-999, group 00 or serial 0000;
     * 078-05-1120 is the famous wallet-card number. */
    if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0)
        return false;
    return !(area == 78 && group == 5 && serial == 1120);
}

bool vs_valid_iban(const uint8_t *s, size_t n)
{
    uint8_t c[34];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ')
            continue;
        if (k == sizeof c)
            return false;
        uint8_t ch = s[i] >= 'a' && s[i] <= 'z' ? (uint8_t)(s[i] - 32) : s[i];
        bool digit = ch >= '0' && ch <= '9', letter = ch >= 'A' && ch <= 'Z';
        if (!digit && !letter)
            return false;
        c[k++] = ch;
    }
    if (k < 15 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' || c[2] > '9' || c[3] > '9')
        return false;
    /* Move the first four characters to the end, letters to 10..35, mod 97. */
    unsigned rem = 0;
    for (size_t i = 0; i < k; i++) {
        uint8_t ch = c[(i + 4) % k];
        if (ch >= 'A')
            rem = (rem * 100 + (unsigned)(ch - 'A' + 10)) % 97;
        else
            rem = (rem * 10 + (unsigned)(ch - '0')) % 97;
    }
    return rem == 1;
}

static int b64url_value(uint8_t ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '-' || ch == '_' || ch == '+')
        return ch == '_' ? 63 : 62;
    if (ch == '/')
        return 63;
    return -1;
}

/* Decode the first bytes of a base64url part into out (at most cap);
 * false when a character is not base64url. */
static bool b64url_prefix(const uint8_t *s, size_t n, uint8_t *out, size_t cap, size_t *got)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    *got = 0;
    for (size_t i = 0; i < n && *got < cap; i++) {
        int v = b64url_value(s[i]);
        if (v < 0)
            return s[i] == '=';
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[(*got)++] = (uint8_t)(acc >> bits);
        }
    }
    return true;
}

static bool printable(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((s[i] < 0x20 && s[i] != '\n' && s[i] != '\r' && s[i] != '\t') || s[i] >= 0x7f)
            return false;
    return true;
}

/* A JWT: a header that decodes to a JSON object naming its "alg", and a
 * payload that decodes to printable JSON text. */
bool vs_valid_jwt(const uint8_t *s, size_t n)
{
    const uint8_t *dot1 = memchr(s, '.', n);
    if (dot1 == NULL)
        return false;
    size_t hl = (size_t)(dot1 - s);
    const uint8_t *p = dot1 + 1;
    size_t rest = n - hl - 1;
    const uint8_t *dot2 = memchr(p, '.', rest);
    size_t pl = dot2 != NULL ? (size_t)(dot2 - p) : rest;
    uint8_t head[400], body[48]; /* a header of at most 512 characters decodes to 384 bytes */
    size_t hn, bn;
    if (hl > 512 || !b64url_prefix(s, hl, head, sizeof head - 1, &hn) ||
        !b64url_prefix(p, pl, body, sizeof body, &bn) || hn < 8 || bn < 2)
        return false;
    head[hn] = '\0';
    size_t end = hn;
    while (end > 0 && (head[end - 1] == ' ' || head[end - 1] == '\n' || head[end - 1] == '\r'))
        end--;
    return head[0] == '{' && end > 0 && head[end - 1] == '}' && printable(head, hn) &&
           strstr((const char *)head, "\"alg\"") != NULL && body[0] == '{' && printable(body, bn);
}

double vs_shannon_entropy(const uint8_t *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned count[256] = {0};
    for (size_t i = 0; i < n; i++)
        count[s[i]]++;
    double h = 0;
    for (size_t b = 0; b < 256; b++) {
        if (count[b] == 0)
            continue;
        double p = (double)count[b] / (double)n;
        h -= p * log2(p);
    }
    return h;
}
