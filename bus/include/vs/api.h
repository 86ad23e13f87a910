/*
 * api.h - symbol visibility of the bus library.
 *
 * The library is built with -fvisibility=hidden; only functions marked
 * VS_API are part of its ABI.
 */
#ifndef VS_API_H
#define VS_API_H

#define VS_API __attribute__((visibility("default")))

#endif
