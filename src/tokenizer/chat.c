// chat.c: chat layouts rendered natively (see fg_chat_render in frugal.h and docs/tokenizer.md).
// DEEPSEEK_V3 follows the chat_template of DeepSeek-V3's tokenizer_config.json line by line
// (without tool calls issued by the assistant: an assistant message needs content), including
// its quirks: system prompts are collected from anywhere and put first, and the "first tool
// output" flag is never reset.
#include "util.h"

#include <stdint.h>
#include <string.h>

typedef struct { char *buf; size_t cap, n; } sb;
static void add(sb *s, const char *t) {
    size_t l = strlen(t);
    if (s->n < s->cap) memcpy(s->buf + s->n, t, FG_MIN(l, s->cap - s->n));
    s->n += l;
}

#define BOS "<｜begin▁of▁sentence｜>"
#define EOS "<｜end▁of▁sentence｜>"

size_t fg_chat_render(int style, const fg_chat_msg *m, int n, int gen, char *buf, size_t cap) {
    sb s = {buf, cap, 0};
    if (style < FG_CHAT_DEEPSEEK_V3 || style > FG_CHAT_FRUGAL) { fg_set_error("chat: unknown style %d", style); return SIZE_MAX; }
    for (int i = 0; i < n; i++) {
        const char *r = m[i].role;
        if (!r || !m[i].content) { fg_set_error("chat: message %d has no role or no content", i); return SIZE_MAX; }
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool")) {
            fg_set_error("chat: message %d has unknown role \"%s\" (system, user, assistant, tool)", i, r);
            return SIZE_MAX;
        }
    }
    if (style == FG_CHAT_FRUGAL) {
        add(&s, "<|bos|>");
        for (int i = 0; i < n; i++) {
            add(&s, "<|"); add(&s, m[i].role); add(&s, "|>"); add(&s, m[i].content); add(&s, "<|eos|>\n");
        }
        if (gen) add(&s, "<|assistant|>");
    } else {
        add(&s, BOS);
        int first_sp = 1;
        for (int i = 0; i < n; i++)
            if (!strcmp(m[i].role, "system")) { if (!first_sp) add(&s, "\n\n"); add(&s, m[i].content); first_sp = 0; }
        int is_tool = 0, output_first = 1;
        for (int i = 0; i < n; i++) {
            const char *r = m[i].role, *c = m[i].content;
            if (!strcmp(r, "user")) { is_tool = 0; add(&s, "<｜User｜>"); add(&s, c); }
            else if (!strcmp(r, "assistant")) {
                if (style == FG_CHAT_DEEPSEEK_R1) {
                    const char *k;
                    while ((k = strstr(c, "</think>"))) c = k + 8;
                }
                if (is_tool) { add(&s, "<｜tool▁outputs▁end｜>"); is_tool = 0; }
                else add(&s, "<｜Assistant｜>");
                add(&s, c); add(&s, EOS);
            } else if (!strcmp(r, "tool")) {
                is_tool = 1;
                if (output_first) { add(&s, "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>"); output_first = 0; }
                else add(&s, "\n<｜tool▁output▁begin｜>");
                add(&s, c); add(&s, "<｜tool▁output▁end｜>");
            }
        }
        if (is_tool) add(&s, "<｜tool▁outputs▁end｜>");
        if (gen && !is_tool) add(&s, style == FG_CHAT_DEEPSEEK_R1 ? "<｜Assistant｜><think>\n" : "<｜Assistant｜>");
    }
    if (s.n < cap) buf[s.n] = 0;
    return s.n;
}
