// test_oracle.c: frugal against the DeepSeek-pinned oracle vectors in ../shared/testdata/oracle
// (v3-tiny, v2-tiny, v2lite-tiny): logits, loss, every gradient, a 10-step AdamW trajectory.
#include <sys/stat.h>

#include "oracle_case.h"

int main(int argc, char **argv) {
    const char *root = "../shared/testdata/oracle";
    struct stat sb;
    if (stat(root, &sb)) SKIP("%s not found: oracle comparison not run (it runs in CI)", root);
    const char *cases[] = {"v3-tiny", "v2-tiny", "v2lite-tiny"};
    for (int i = 0; i < 3; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", root, cases[i]);
        check_case(dir, argc > 1 ? 2 : 1);
    }
    return TEST_DONE();
}
