/*
 * validators.h - checks a candidate secret must pass before a rule reports
 * it (scan.c): what a regular expression cannot say - a card number's Luhn
 * digit, the SSA's rules for social security numbers, an IBAN's mod-97
 * check, that a JWT's parts decode to JSON, that a generic secret is
 * random enough. Each takes the secret's bytes and answers yes or no.
 */
#ifndef VS_SCAN_VALIDATORS_H
#define VS_SCAN_VALIDATORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vs_validator { VS_VALID_NONE, VS_VALID_LUHN, VS_VALID_SSN, VS_VALID_IBAN, VS_VALID_JWT,
                    VS_VALID_ENTROPY };

/* "luhn".. -> the validator; -EINVAL for an unknown name. */
int vs_validator_parse(const char *name, enum vs_validator *out);

bool vs_valid_luhn(const uint8_t *s, size_t n);    /* digits; spaces and dashes ignored */
bool vs_valid_ssn(const uint8_t *s, size_t n);     /* AAA-GG-SSSS or 9 digits */
bool vs_valid_iban(const uint8_t *s, size_t n);    /* spaces ignored */
bool vs_valid_jwt(const uint8_t *s, size_t n);     /* header.payload[.signature] */
/* Shannon entropy in bits per byte. */
double vs_shannon_entropy(const uint8_t *s, size_t n);

#endif
