/*
 * odl_cycles: a QEMU TCG plugin that turns the instructions a Cortex-M4F guest executes into modelled
 * Cortex-M4 cycles, with a per-instruction-class timing table (docs/firmware.md, "Cycle model").
 *
 * Every translated block (TB) is classified once, at translation time, from QEMU's disassembly of each
 * instruction (capstone): its cycle cost and instruction count are summed into a small record, and an
 * execution callback adds the record to global counters each time the block runs.  Conditional branches
 * are charged the not-taken cost in their block; the extra refill of a taken branch is charged when the
 * next block starts somewhere other than the fall-through address.
 *
 * The guest reads the counters synchronously through Arm semihosting: just before any BKPT instruction
 * executes, the plugin writes the current counters to the file `out=` (pwrite at offset 0); the guest's
 * semihosting SYS_SEEK/SYS_READ of that file (QEMU runs the call in the same vCPU thread right after)
 * then returns exactly the counts at that instruction.  Code in the `exclude=` address ranges (the
 * firmware's simulation-only section: the bench link, pacing waits, the counter reads themselves) costs
 * nothing and is not counted, so the simulation infrastructure does not disturb what is measured.
 * `region=START:END` (repeatable) adds per-range counters (the benchmark's per-kernel figures).
 *
 * Arguments (comma-separated key=value, as QEMU passes them):
 *   out=PATH            counter file (required)
 *   exclude=START:END   hex addresses, end exclusive (repeatable, up to 8)
 *   region=START:END    hex addresses, end exclusive (repeatable, up to 64)
 *   refill=P            branch pipeline refill cycles P (default 2; the TRM's range is 1..3)
 *
 * File layout (little-endian, rewritten in place): struct odl_counters below.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin_api.h"

ODL_PLUGIN_EXPORT int qemu_plugin_version = ODL_QEMU_PLUGIN_VERSION;

enum cls {
    C_ALU,       /* data processing, moves, compares, IT, NOP, extend, bit-field */
    C_MUL,       /* MUL, MLA, MLS, long multiplies */
    C_DIV,       /* SDIV, UDIV */
    C_LOAD,      /* LDR/LDRB/LDRH/LDRSB/LDRSH (single) */
    C_STORE,     /* STR/STRB/STRH (single) */
    C_LDSTD,     /* LDRD/STRD */
    C_LDSTM,     /* LDM/STM/PUSH/POP */
    C_BRANCH,    /* B, BL, BX, BLX, CBZ, CBNZ, TBB, TBH, B<cond> */
    C_VLDST,     /* VLDR/VSTR */
    C_VLDSTM,    /* VLDM/VSTM/VPUSH/VPOP */
    C_VALU,      /* VADD, VSUB, VMUL, VNMUL, VABS, VNEG, VCMP, VCVT, VMOV (FP<->FP, immediate), VMRS, VMSR, VSEL... */
    C_VMAC,      /* VMLA, VMLS, VNMLA, VNMLS, VFMA, VFMS, VFNMA, VFNMS */
    C_VDIV,      /* VDIV, VSQRT */
    C_VMOV_CORE, /* VMOV between core and FP registers */
    C_OTHER,     /* anything else (1 cycle) */
    N_CLASSES
};

#define MAX_EXCL 8
#define MAX_REGIONS 64
#define MAGIC 0x43594C4Fu /* "OLYC" */

struct region {
    uint64_t start, end;
};

/* What the guest reads (and the benchmark parses): 16 + 16 + 8*N_CLASSES*2 + 16*MAX_REGIONS bytes. */
struct odl_counters {
    uint32_t magic;
    uint32_t n_classes;
    uint64_t cycles;       /* modelled cycles, excluded ranges not counted */
    uint64_t insns;        /* instructions executed, excluded ranges not counted */
    uint64_t insns_all;    /* every instruction executed, excluded ranges included */
    uint64_t class_insns[N_CLASSES];
    uint64_t class_cycles[N_CLASSES];
    uint32_t n_regions;
    uint32_t reserved;
    struct {
        uint64_t cycles, insns;
    } regions[MAX_REGIONS];
};

struct tbinfo {
    uint64_t start, fallthrough;
    uint32_t cycles, insns, insns_all;
    uint16_t cls_n[N_CLASSES];
    uint16_t cls_c[N_CLASSES];
    uint8_t cond_branch; /* ends with a conditional branch (taken costs `refill` more) */
    uint8_t counted;     /* the branch is in counted code */
    int16_t region;
};

static struct odl_counters ctr;
static struct region excl[MAX_EXCL];
static int n_excl;
static struct region regions[MAX_REGIONS];
static int refill = 2;
static int out_fd = -1;
static const struct tbinfo *prev_tb;

static int in_ranges(uint64_t a, const struct region *r, int n) {
    for (int i = 0; i < n; i++)
        if (a >= r[i].start && a < r[i].end) return i;
    return -1;
}

static void dump(void) {
    if (out_fd >= 0) {
        ssize_t w = pwrite(out_fd, &ctr, sizeof ctr, 0);
        (void)w;
    }
}

static void vcpu_tb_exec(unsigned int vcpu, void *udata) {
    (void)vcpu;
    const struct tbinfo *t = udata;
    if (prev_tb && prev_tb->cond_branch && prev_tb->counted && t->start != prev_tb->fallthrough) {
        ctr.cycles += (uint64_t)refill;
        ctr.class_cycles[C_BRANCH] += (uint64_t)refill;
        if (prev_tb->region >= 0) ctr.regions[prev_tb->region].cycles += (uint64_t)refill;
    }
    ctr.cycles += t->cycles;
    ctr.insns += t->insns;
    ctr.insns_all += t->insns_all;
    for (int c = 0; c < N_CLASSES; c++) {
        ctr.class_insns[c] += t->cls_n[c];
        ctr.class_cycles[c] += t->cls_c[c];
    }
    if (t->region >= 0) {
        ctr.regions[t->region].cycles += t->cycles;
        ctr.regions[t->region].insns += t->insns;
    }
    prev_tb = t;
}

static void vcpu_bkpt(unsigned int vcpu, void *udata) {
    (void)vcpu;
    (void)udata;
    dump();
}

/* Number of registers in a register list such as "{r4, r5, r8-r11, lr}" or "{s0-s15}" or "{d8, d9}";
 * *has_pc is set when PC is in it, *doubles when the list holds D registers. */
static int reglist(const char *s, int *has_pc, int *doubles) {
    const char *p = strchr(s, '{');
    int n = 0;
    *has_pc = 0;
    *doubles = 0;
    if (!p) return 1;
    p++;
    while (*p && *p != '}') {
        while (*p == ' ' || *p == ',') p++;
        if (*p == '}' || !*p) break;
        char name[8] = {0};
        int k = 0;
        while (*p && *p != ',' && *p != '}' && *p != '-' && *p != ' ' && k < 7) name[k++] = *p++;
        int first = atoi(name + 1);
        if (name[0] == 'd') *doubles = 1;
        if (!strcmp(name, "pc")) *has_pc = 1;
        if (*p == '-') {
            p++;
            char name2[8] = {0};
            k = 0;
            while (*p && *p != ',' && *p != '}' && *p != ' ' && k < 7) name2[k++] = *p++;
            int last = atoi(name2 + 1);
            n += last >= first ? last - first + 1 : 1;
        } else {
            n += 1;
        }
        while (*p && *p != ',' && *p != '}') p++;
    }
    return n ? n : 1;
}

static const char *CONDS[] = {"eq", "ne", "cs", "cc", "hs", "lo", "mi", "pl", "vs",
                              "vc", "hi", "ls", "ge", "lt", "gt", "le", NULL};

static int is_cond(const char *c) {
    for (int i = 0; CONDS[i]; i++)
        if (!strncmp(c, CONDS[i], 2)) return 1;
    return 0;
}

/* Classify one instruction: class, cycles (not-taken cost for conditional branches), and whether it is
 * a conditional branch.  `prev_ls` says whether the previous instruction was a single load/store (the
 * TRM's pipelining of neighbouring LDR/STR: the second costs one cycle less). */
static enum cls classify(const char *dis, int prev_ls, int *cycles, int *cond_branch, int *is_ls) {
    char m[16] = {0};
    int k = 0;
    const char *p = dis;
    while (*p == ' ') p++;
    while (*p && *p != ' ' && *p != '\t' && k < 15) m[k++] = *p++;
    const char *ops = p;
    char *dot = strchr(m, '.');
    char suffix[8] = {0};
    if (dot) {
        strncpy(suffix, dot + 1, 7);
        *dot = 0; /* "vadd.f32" -> "vadd", "ldr.w" -> "ldr" */
    }
    (void)suffix;
    size_t len = strlen(m);
    *cond_branch = 0;
    *is_ls = 0;
    int hp, dbl;

    /* --- branches --- */
    if (!strcmp(m, "b") || !strcmp(m, "bl") || !strcmp(m, "blx") || !strcmp(m, "bx")) {
        *cycles = 1 + refill;
        return C_BRANCH;
    }
    if (m[0] == 'b' && len == 3 && is_cond(m + 1)) { /* b<cond> */
        *cycles = 1;
        *cond_branch = 1;
        return C_BRANCH;
    }
    if (!strcmp(m, "cbz") || !strcmp(m, "cbnz")) {
        *cycles = 1;
        *cond_branch = 1;
        return C_BRANCH;
    }
    if (!strcmp(m, "tbb") || !strcmp(m, "tbh")) {
        *cycles = 2 + 1 + refill + 1; /* 2 load + 1 add + refill (TRM: >= 6 with P = 3) */
        return C_BRANCH;
    }
    /* --- FP --- */
    if (m[0] == 'v') {
        if (!strncmp(m, "vldm", 4) || !strncmp(m, "vstm", 4) || !strcmp(m, "vpush") || !strcmp(m, "vpop")) {
            int n = reglist(ops, &hp, &dbl);
            *cycles = 1 + (dbl ? 2 * n : n);
            return C_VLDSTM;
        }
        if (!strcmp(m, "vldr") || !strcmp(m, "vstr")) {
            *cycles = 2;
            return C_VLDST;
        }
        if (!strcmp(m, "vmla") || !strcmp(m, "vmls") || !strcmp(m, "vnmla") || !strcmp(m, "vnmls") ||
            !strcmp(m, "vfma") || !strcmp(m, "vfms") || !strcmp(m, "vfnma") || !strcmp(m, "vfnms")) {
            *cycles = 3;
            return C_VMAC;
        }
        if (!strcmp(m, "vdiv") || !strcmp(m, "vsqrt")) {
            *cycles = 14;
            return C_VDIV;
        }
        if (!strcmp(m, "vmov")) {
            /* core <-> FP transfers name an r register among the operands */
            const char *q = ops;
            int core = 0;
            while (*q) {
                if ((q[0] == 'r' && q[1] >= '0' && q[1] <= '9') || !strncmp(q, "ip", 2) || !strncmp(q, "lr", 2) ||
                    !strncmp(q, "sl", 2) || !strncmp(q, "fp", 2) || !strncmp(q, "sb", 2)) {
                    core = 1;
                    break;
                }
                q++;
            }
            if (core) {
                *cycles = 2;
                return C_VMOV_CORE;
            }
            *cycles = 1;
            return C_VALU;
        }
        *cycles = 1; /* vadd, vsub, vmul, vnmul, vabs, vneg, vcmp(e), vcvt, vmrs, vmsr, vsel, vmaxnm ... */
        return C_VALU;
    }
    /* --- integer loads/stores --- */
    if (!strncmp(m, "ldrd", 4) || !strncmp(m, "strd", 4)) {
        *cycles = 3;
        return C_LDSTD;
    }
    if (!strncmp(m, "ldm", 3) || !strncmp(m, "stm", 3) || !strcmp(m, "push") || !strcmp(m, "pop")) {
        int n = reglist(ops, &hp, &dbl);
        *cycles = 1 + n + ((hp && (m[0] == 'l' || m[0] == 'p')) ? refill : 0);
        return C_LDSTM;
    }
    if (!strncmp(m, "ldr", 3) || !strncmp(m, "ldrex", 5)) {
        /* ldr pc, [...] is a branch */
        const char *q = ops;
        while (*q == ' ') q++;
        if (!strncmp(q, "pc,", 3)) {
            *cycles = 2 + 1 + refill;
            return C_BRANCH;
        }
        *is_ls = 1;
        *cycles = prev_ls ? 1 : 2;
        return C_LOAD;
    }
    if (!strncmp(m, "str", 3)) {
        *is_ls = 1;
        *cycles = 1;
        return C_STORE;
    }
    /* --- multiply / divide --- */
    if (!strcmp(m, "sdiv") || !strcmp(m, "udiv")) {
        *cycles = 7; /* TRM: 2..12 depending on operand values; the middle of the range */
        return C_DIV;
    }
    if (!strncmp(m, "mul", 3) || !strncmp(m, "mla", 3) || !strncmp(m, "mls", 3) || !strncmp(m, "smul", 4) ||
        !strncmp(m, "umul", 4) || !strncmp(m, "smla", 4) || !strncmp(m, "umla", 4) || !strncmp(m, "smmul", 5) ||
        !strncmp(m, "smmla", 5)) {
        *cycles = 1;
        return C_MUL;
    }
    /* pop/ldm to pc handled above; mov pc / add pc are branches */
    {
        const char *q = ops;
        while (*q == ' ') q++;
        if ((!strcmp(m, "mov") || !strcmp(m, "add")) && !strncmp(q, "pc,", 3)) {
            *cycles = 1 + refill;
            return C_BRANCH;
        }
    }
    if (!strcmp(m, "bkpt") || !strcmp(m, "wfi") || !strcmp(m, "wfe") || !strcmp(m, "svc") || !strcmp(m, "udf")) {
        *cycles = 1;
        return C_OTHER;
    }
    *cycles = 1;
    return C_ALU;
}

static void vcpu_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    struct tbinfo *t = calloc(1, sizeof *t);
    if (!t) return;
    t->start = qemu_plugin_tb_vaddr(tb);
    t->fallthrough = t->start;
    t->region = (int16_t)in_ranges(t->start, regions, (int)ctr.n_regions);
    int prev_ls = 0;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t va = qemu_plugin_insn_vaddr(insn);
        size_t sz = qemu_plugin_insn_size(insn);
        t->fallthrough = va + sz;
        t->insns_all++;
        char *dis = qemu_plugin_insn_disas(insn);
        int cyc = 1, cb = 0, ls = 0;
        enum cls c = classify(dis ? dis : "", prev_ls, &cyc, &cb, &ls);
        if (dis && !strncmp(dis, "bkpt", 4)) qemu_plugin_register_vcpu_insn_exec_cb(insn, vcpu_bkpt, QEMU_PLUGIN_CB_NO_REGS, NULL);
        free(dis);
        int counted = in_ranges(va, excl, n_excl) < 0;
        if (i == n - 1) {
            t->cond_branch = (uint8_t)cb;
            t->counted = (uint8_t)counted;
        }
        prev_ls = ls;
        if (!counted) continue;
        t->cycles += (uint32_t)cyc;
        t->insns++;
        t->cls_n[c]++;
        t->cls_c[c] += (uint16_t)cyc;
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, vcpu_tb_exec, QEMU_PLUGIN_CB_NO_REGS, t);
}

static void at_exit(qemu_plugin_id_t id, void *p) {
    (void)id;
    (void)p;
    dump();
    if (out_fd >= 0) close(out_fd);
}

static int parse_range(const char *v, struct region *r) {
    char *end;
    r->start = strtoull(v, &end, 16);
    if (*end != ':') return -1;
    r->end = strtoull(end + 1, &end, 16);
    return (*end || r->end <= r->start) ? -1 : 0;
}

ODL_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const struct qemu_info_t *info, int argc, char **argv) {
    (void)info;
    const char *out = NULL;
    ctr.magic = MAGIC;
    ctr.n_classes = N_CLASSES;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strncmp(a, "out=", 4)) {
            out = a + 4;
        } else if (!strncmp(a, "exclude=", 8) && n_excl < MAX_EXCL) {
            if (parse_range(a + 8, &excl[n_excl])) goto bad;
            n_excl++;
        } else if (!strncmp(a, "region=", 7) && ctr.n_regions < MAX_REGIONS) {
            if (parse_range(a + 7, &regions[ctr.n_regions])) goto bad;
            ctr.n_regions++;
        } else if (!strncmp(a, "refill=", 7)) {
            refill = atoi(a + 7);
            if (refill < 1 || refill > 3) goto bad;
        } else {
            goto bad;
        }
        continue;
    bad:
        fprintf(stderr, "odl_cycles: bad argument '%s' (out=PATH, exclude=START:END, region=START:END, refill=1..3)\n", a);
        return -1;
    }
    if (!out) {
        fprintf(stderr, "odl_cycles: out=PATH is required\n");
        return -1;
    }
    out_fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (out_fd < 0) {
        perror("odl_cycles: out");
        return -1;
    }
    dump();
    qemu_plugin_register_vcpu_tb_trans_cb(id, vcpu_tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
