// fuzz/sections.h: for the targets whose input is a sectioned frugal file (.fgck, .fgq: a 16-byte
// header, then sections of tag (4) | payload length (8, little-endian) | payload | CRC-32 (4)).
#ifndef FG_FUZZ_SECTIONS_H
#define FG_FUZZ_SECTIONS_H

#include <stdint.h>
#include <string.h>

#include "frugal.h"
#include "util.h"

static uint64_t fuzz_rd64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

// Walks the sections of b[0..n) as far as they are well formed. fix: rewrite each CRC, so that
// mutations reach the parsers behind the checksums. Returns 1 when a CONF section describes a
// model the harness should skip: its rope table (max_position_embeddings x rope dim floats, not
// bounded by the file size) over limit bytes, or, with scratch, its decoding scratch estimate too.
static int fuzz_walk_sections(uint8_t *b, size_t n, int fix, uint64_t limit, int scratch) {
    size_t off = 16;
    int huge = 0;
    while (n >= 16 && off <= n && n - off >= 16) {
        uint64_t len = fuzz_rd64(b + off + 4);
        if (len > n - off - 16) break;
        const uint8_t *p = b + off + 12;
        if (fix) {
            uint32_t c = fg_crc32(0, p, (size_t)len);
            for (int i = 0; i < 4; i++) b[off + 12 + len + i] = (uint8_t)(c >> (8 * i));
        }
        fg_config c;
        if (!memcmp(b + off, "CONF", 4) && fg_config_from_json(&c, (const char *)p, (size_t)len, "fuzz", NULL) == 0) {
            uint64_t rope = c.attn_type == FG_ATTN_MLA ? (uint64_t)c.qk_rope_head_dim : (uint64_t)c.head_dim;
            huge |= (uint64_t)c.max_position_embeddings * rope * sizeof(float) > limit;
            if (scratch) huge |= (uint64_t)c.vocab_size * 12 + (uint64_t)c.hidden_size * c.num_attention_heads * 64 > limit;
        }
        off += 12 + (size_t)len + 4;
    }
    return huge;
}

#endif
