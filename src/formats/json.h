// json.h: a small, strict JSON (RFC 8259) DOM parser and a string-literal writer.
//
// What it is: one call turns text into a tree of fg_json nodes that lives in a single arena owned
// by the root; one call frees it. Parsing is linear in the input size (multi-MB JSONL lines are
// fine) and recursion is bounded by FG_JSON_MAX_DEPTH, so hostile input cannot overflow the stack.
//
// What it deliberately does not do: no comments, no trailing commas, no NaN/Infinity, no single
// quotes, no streaming, no mutation API, no full-tree serializer. Numbers are stored as double
// only (integers beyond 2^53 lose precision; values outside the double range are rejected).
//
// Invariants of a returned tree:
//   - every STRING node has str[len] == 0 and str holds valid UTF-8 (it may contain 0 bytes that
//     came from \u0000; use len, not strlen);
//   - every member of an OBJECT has key != NULL (same rules as str, length key_len); array
//     elements and the root have key == NULL;
//   - n equals the length of the child/next list; NUMBER nodes hold finite values.
// Duplicate object keys are kept in document order; fg_json_get returns the last one.
#ifndef FG_JSON_H
#define FG_JSON_H

#include <stddef.h>
#include <stdio.h>

#define FG_JSON_MAX_DEPTH 256 // most arrays/objects nested inside each other

typedef enum { FG_JSON_NULL, FG_JSON_BOOL, FG_JSON_NUMBER, FG_JSON_STRING, FG_JSON_ARRAY, FG_JSON_OBJECT } fg_json_type;
typedef struct fg_json fg_json;
struct fg_json {
    fg_json_type type;
    double num;             // NUMBER
    int boolean;            // BOOL
    char *str; size_t len;  // STRING (decoded UTF-8, NUL-terminated, len excludes NUL; may contain \0 from \u0000)
    char *key;              // member name when this node is an object member (else NULL)
    size_t key_len;         // length of key in bytes (keys, too, may contain \0)
    fg_json *child;         // first element/member (ARRAY, OBJECT)
    fg_json *next;          // next sibling
    int n;                  // number of children
    int line, col;          // where the value starts in the text (1-based; col counts bytes)
};

// Parses text[0..len) (it need not be NUL-terminated). The whole text must be exactly one value,
// optionally surrounded by whitespace. On error returns NULL and sets fg_last_error to
// "<where>:<line>:<col>: <what is wrong>" (where = the name passed in, e.g. a file path).
// The returned tree owns all its memory (one arena); the caller frees it with fg_json_free.
fg_json *fg_json_parse(const char *text, size_t len, const char *where);
// Frees a tree returned by fg_json_parse. j must be that root (or NULL), never an inner node.
void fg_json_free(fg_json *j);
// Returns the member named key, or NULL if absent or obj is not an object. With duplicate keys the
// last one wins. Linear in the number of members.
const fg_json *fg_json_get(const fg_json *obj, const char *key);
// The first member of obj whose key repeats an earlier member's, or NULL (also for a non-object).
// Quadratic in the member count: meant for small records (a JSONL line's object), which refuse
// duplicates rather than silently keep the last one.
const fg_json *fg_json_dup_key(const fg_json *obj);
// "null", "bool", "number", "string", "array", "object": for error messages.
const char *fg_json_type_name(fg_json_type t);
// "null", "a boolean", "a number", "a string", "an array", "an object": for "expected X, got Y".
const char *fg_json_type_article(fg_json_type t);
// Offset of the first byte of s[0..len) that is not part of a valid UTF-8 sequence (overlongs,
// surrogates and code points above U+10FFFF are invalid), or len if all of it is valid.
size_t fg_utf8_check(const char *s, size_t len);
// Writes s[0..len) as a JSON string literal (with quotes) to f: '"' and '\\' and control chars are
// escaped, valid UTF-8 is passed through, every byte that is not part of a valid UTF-8 sequence is
// written as \ufffd. The output always parses back with fg_json_parse. Write errors show up in
// ferror(f).
void fg_json_write_string(FILE *f, const char *s, size_t len);

#endif
