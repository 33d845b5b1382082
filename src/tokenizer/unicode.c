// unicode.c: see unicode.h. Category to class-bit mapping and a strict UTF-8 decoder.
#include "tokenizer/unicode.h"

static const uint8_t cat_flags[FG_UC_NCAT] = {
    [FG_UC_LU] = FG_UCF_L, [FG_UC_LL] = FG_UCF_L, [FG_UC_LT] = FG_UCF_L, [FG_UC_LM] = FG_UCF_L,
    [FG_UC_LO] = FG_UCF_L, [FG_UC_MN] = FG_UCF_M, [FG_UC_MC] = FG_UCF_M, [FG_UC_ME] = FG_UCF_M,
    [FG_UC_ND] = FG_UCF_N, [FG_UC_NL] = FG_UCF_N, [FG_UC_NO] = FG_UCF_N, [FG_UC_PC] = FG_UCF_P,
    [FG_UC_PD] = FG_UCF_P, [FG_UC_PS] = FG_UCF_P, [FG_UC_PE] = FG_UCF_P, [FG_UC_PI] = FG_UCF_P,
    [FG_UC_PF] = FG_UCF_P, [FG_UC_PO] = FG_UCF_P, [FG_UC_SM] = FG_UCF_S, [FG_UC_SC] = FG_UCF_S,
    [FG_UC_SK] = FG_UCF_S, [FG_UC_SO] = FG_UCF_S, [FG_UC_ZS] = FG_UCF_WS, [FG_UC_ZL] = FG_UCF_WS,
    [FG_UC_ZP] = FG_UCF_WS,
};

uint32_t fg_uc_flags(uint32_t cp) {
    if ((cp >= 9 && cp <= 13) || cp == 0x85) return FG_UCF_WS;
    return cat_flags[fg_uc_cat(cp)];
}

uint32_t fg_utf8_decode(const unsigned char *s, size_t n, int *len) {
    unsigned c = s[0];
    *len = 1;
    if (c < 0x80) return c;
    int need; uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; min = 0x10000; }
    else return FG_UC_INVALID + c;
    if ((size_t)need >= n) return FG_UC_INVALID + c;
    for (int k = 1; k <= need; k++) {
        if ((s[k] & 0xC0) != 0x80) return FG_UC_INVALID + c;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return FG_UC_INVALID + c;
    *len = need + 1;
    return cp;
}

int fg_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xC0 | (cp >> 6)); o[1] = (unsigned char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12)); o[1] = (unsigned char)(0x80 | ((cp >> 6) & 63));
        o[2] = (unsigned char)(0x80 | (cp & 63)); return 3;
    }
    if (cp < 0x110000) {
        o[0] = (unsigned char)(0xF0 | (cp >> 18)); o[1] = (unsigned char)(0x80 | ((cp >> 12) & 63));
        o[2] = (unsigned char)(0x80 | ((cp >> 6) & 63)); o[3] = (unsigned char)(0x80 | (cp & 63)); return 4;
    }
    return 0;
}
