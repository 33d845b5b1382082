// fuzz_countdown.c: the Countdown verifier (fg_countdown_parse / _check_expr / _check) on
// arbitrary bytes, the parser that grades model output. Input layout: byte 0 picks n (2 + b % 5),
// bytes 1..n the numbers (b % 100, 0 meaning 100), the next 2 the target (big-endian % 1000, 0
// meaning 1), the rest is the expression.
// Properties checked beyond "no crash, no sanitizer report":
//   - a correct verdict implies valid syntax, only the grammar's characters and n number literals;
//   - the same bytes as token ids after </think> and before <|eos|> get the same verdict from
//     fg_countdown_check (and a well-formed flag that follows the syntax verdict), and a special
//     id put inside them makes it 0;
//   - the verdict does not change when a space is added at either end;
//   - a problem of <= 4 numbers either fails to render or renders within FG_CD_MAX_TOKENS and its
//     own answer verifies.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/bytetok.h"
#include "data/countdown.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    fg_countdown p = {.n = 2 + data[0] % 5};
    size_t at = 1;
    for (int i = 0; i < p.n; i++, at++) p.nums[i] = at >= size ? 1 : data[at] % 100 ? data[at] % 100 : 100;
    p.target = at + 1 < size && (data[at] << 8 | data[at + 1]) % 1000 ? (data[at] << 8 | data[at + 1]) % 1000 : 1;
    at = at + 2 < size ? at + 2 : size;
    const char *expr = (const char *)data + at;
    size_t len = size - at;

    int correct = -1, syntax = fg_countdown_parse(&p, expr, len, &correct);
    if ((syntax != 0 && syntax != 1) || (correct != 0 && correct != 1) || (correct && !syntax)) abort();
    if (fg_countdown_check_expr(&p, expr, len) != correct) abort();
    if (fg_countdown_parse(NULL, expr, len, NULL) != syntax) abort();
    if (correct) {
        int lits = 0;
        for (size_t i = 0; i < len; i++) {
            if (!strchr("0123456789+-*/() ", expr[i]) || !expr[i]) abort();
            lits += expr[i] >= '0' && expr[i] <= '9' && (i == 0 || expr[i - 1] < '0' || expr[i - 1] > '9');
        }
        if (lits != p.n) abort();
    }
    // the same text as ids: <think> x </think> text <|eos|>
    int32_t *ids = malloc(sizeof(int32_t) * (len + 5));
    if (!ids) return 0;
    int k = 0;
    ids[k++] = FG_TOK_THINK;
    ids[k++] = 'x';
    ids[k++] = FG_TOK_END_THINK;
    for (size_t i = 0; i < len; i++) ids[k++] = (unsigned char)expr[i];
    ids[k++] = FG_TOK_EOS;
    int fmt = -1;
    if (fg_countdown_check(&p, ids, k, &fmt) != correct || fmt != syntax) abort();
    if (len) {
        ids[3 + len / 2] = FG_TOK_PAD;
        if (fg_countdown_check(&p, ids, k, &fmt) != 0 || fmt != 0) abort();
    }
    free(ids);
    // spaces at the ends change nothing
    char *sp = malloc(len + 2);
    if (!sp) return 0;
    sp[0] = ' ';
    memcpy(sp + 1, expr, len);
    sp[len + 1] = ' ';
    if (fg_countdown_check_expr(&p, sp, len + 2) != correct) abort();
    free(sp);
    // rendering (bounded search: at most 4 numbers here)
    if (p.n <= 4) {
        int32_t out[FG_CD_MAX_TOKENS];
        int pl, n = fg_countdown_render(&p, out, &pl);
        if (n > FG_CD_MAX_TOKENS || (n >= 0 && fg_countdown_check(&p, out + pl, n - pl, &fmt) != 1)) abort();
        if (n >= 0 && fmt != 1) abort();
    }
    return 0;
}
