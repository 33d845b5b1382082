// fuzz_shard.c: the token shard reader (header, sizes, CRC, token range) and the manifest parser
// on arbitrary bytes; a shard that parses is then read token by token.
#include <stdint.h>
#include <stdlib.h>

#include "data/shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fg_shard sh;
    if (fg_shard_parse(&sh, data, size, "fuzz.fgsh", 1) == 0) {
        uint64_t sum = 0;
        for (uint64_t i = 0; i < sh.n_tokens; i++) sum += (uint64_t)fg_shard_token(&sh, i) + (uint64_t)fg_shard_trained(&sh, i);
        if (sum == UINT64_MAX) abort();
    }
    fg_manifest m;
    if (fg_manifest_parse(&m, (const char *)data, size, "fuzz.json") == 0) fg_manifest_free(&m);
    return 0;
}
