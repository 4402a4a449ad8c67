/*
 * fake_nvml.c - a libnvidia-ml.so.1 for tests, driven by a scenario file.
 *
 * The real pynvml loads "libnvidia-ml.so.1" with ctypes; built from this file
 * (gcc -shared -fPIC -Wl,-soname,libnvidia-ml.so.1), the test library answers the
 * NVML calls the Backstop agent makes, so tests exercise pynvml's own code paths,
 * struct layouts and error handling without a GPU.
 *
 * Environment
 *   BACKSTOP_FAKE_NVML_SCENARIO  path of the scenario file. Unset or missing file:
 *                                nvmlInit fails with NVML_ERROR_DRIVER_NOT_LOADED
 *                                (a node without a driver); calls after init return
 *                                the same while the file is missing.
 *   BACKSTOP_FAKE_NVML_STATE     path of the power-limit state file (optional).
 *
 * Both variables are read again on every call, and the scenario file is parsed
 * again whenever its path, inode, size, mtime or ctime changes, so a test can change
 * GPUs, processes and errors while an agent runs. Writers should replace the file
 * atomically (write a temporary file, set a new mtime, rename).
 *
 * Scenario file: one statement per line; blank lines and lines starting with '#'
 * are ignored; values are bare words or "double-quoted strings" (no escapes).
 *
 *   driver VERSION                 driver version string (default 550.54.15)
 *   error CALL CODE                make CALL fail with CODE; CALL is one of
 *                                  init, count, driver_version
 *   gpu INDEX key=value ...        one GPU; INDEX must be 0, 1, 2... in order
 *   proc GPU_INDEX key=value ...   one process holding a context on GPU_INDEX
 *
 * gpu keys (units as NVML reports them; all but uuid are optional):
 *   uuid=GPU-...          required, unique
 *   name="NVIDIA H100 80GB HBM3"
 *   util=PCT mem_util=PCT
 *   mem_total=BYTES mem_used=BYTES mem_reserved=BYTES
 *   power=MW              drawn power; reported as min(power, current limit)
 *   limit=MW              current power limit until one is set (default: default_limit)
 *   default_limit=MW min_limit=MW max_limit=MW
 *   temp=CELSIUS sm_clock=MHZ mem_clock=MHZ graphics_clock=MHZ
 *   pci_bus_id=BUS_ID     e.g. 00000000:18:00.0 (default: 00000000:XX:00.0, XX = index + 1)
 *   energy=MJ             total energy since the driver loaded (default 0)
 *   ecc_sbe=N ecc_dbe=N   volatile corrected / uncorrected ECC error totals (default 0)
 *   xids=X,X...           XID errors the GPU raised, oldest first: each is delivered once,
 *                         as an nvmlEventTypeXidCriticalError event, to every event set
 *                         the GPU is registered with (nvmlEventSetWait_v2 never blocks:
 *                         with nothing to deliver it returns NVML_ERROR_TIMEOUT at once)
 *   lost=1                every call on this GPU returns NVML_ERROR_GPU_IS_LOST
 *                         (nvmlDeviceGetHandleByIndex included)
 *   no_permission=1       nvmlDeviceSetPowerManagementLimit returns NO_PERMISSION
 *   not_supported=F,F...  these fields return NVML_ERROR_NOT_SUPPORTED
 *   fail=F:CODE,F:CODE    these fields return CODE
 *   mig=0|1               MIG mode, current and pending (nvmlDeviceGetMigMode; default 0)
 * Fields: name index util memory power power_limit default_limit constraints
 *         set_limit temp sm_clock mem_clock graphics_clock processes
 *         graphics_processes energy ecc events pci process_util mig
 *
 * proc keys: pid=PID (required), mem=BYTES (absent: "not available", which pynvml
 *   reports as None), type=compute|graphics (default compute),
 *   sm=PCT mem_util=PCT ts=US  one utilisation sample of the process, taken at ts
 *                         (microseconds; absent: now, a process busy all along, fresh on
 *                         every call): nvmlDeviceGetProcessUtilization
 *                         returns the samples whose ts is after the timestamp it is
 *                         given, and NVML_ERROR_NOT_FOUND when there is none (as NVML
 *                         does); a proc without sm has no sample,
 *   gi=ID ci=ID           the MIG GPU and compute instance of the process (reported
 *                         only while the GPU's MIG mode is on; else 0xFFFFFFFF).
 *
 * CODE is an NVML error name without its prefix (GPU_IS_LOST, NOT_SUPPORTED,
 * NO_PERMISSION, UNKNOWN, ...) or a number. A malformed scenario is reported on
 * stderr and every call returns NVML_ERROR_UNKNOWN until it is fixed.
 *
 * State file: one line per GPU, "UUID LIMIT_MW". nvmlDeviceSetPowerManagementLimit
 * rewrites it atomically (temporary file + rename) and the power-limit reads honour
 * it, so a test sees what the agent set and the agent sees what a test set. Without
 * BACKSTOP_FAKE_NVML_STATE the limits are kept in memory. Setting a limit outside
 * [min_limit, max_limit] returns NVML_ERROR_INVALID_ARGUMENT.
 *
 * fakeNvmlReset() (not part of NVML) forgets init counts, the parsed scenario and
 * in-memory limits, so tests in one process start from a clean library.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define API __attribute__((visibility("default")))

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_ALREADY_INITIALIZED = 5,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_INSUFFICIENT_POWER = 8,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_IRQ_ISSUE = 11,
    NVML_ERROR_LIBRARY_NOT_FOUND = 12,
    NVML_ERROR_FUNCTION_NOT_FOUND = 13,
    NVML_ERROR_CORRUPTED_INFOROM = 14,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_RESET_REQUIRED = 16,
    NVML_ERROR_OPERATING_SYSTEM = 17,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
    NVML_ERROR_IN_USE = 19,
    NVML_ERROR_MEMORY = 20,
    NVML_ERROR_NO_DATA = 21,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

enum { NVML_CLOCK_GRAPHICS = 0, NVML_CLOCK_SM = 1, NVML_CLOCK_MEM = 2 };
enum { NVML_TEMPERATURE_GPU = 0 };
enum { NVML_MEMORY_ERROR_TYPE_CORRECTED = 0, NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1 };
enum { NVML_VOLATILE_ECC = 0 };
#define NVML_EVENT_TYPE_XID_CRITICAL_ERROR 0x8ULL

#define NVML_MEMORY_V2_VERSION 0x02000028u
#define NVML_VALUE_NOT_AVAILABLE_ULL (~0ULL)
#define NO_INSTANCE 0xFFFFFFFFu

typedef struct {
    unsigned int gpu;
    unsigned int memory;
} nvmlUtilization_t;

/* nvmlPciInfo_t (the _v3 layout). */
typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct {
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total;
    unsigned long long reserved;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_v2_t;

/* nvmlProcessInfo_v1_t: 16 bytes. */
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
} nvmlProcessInfo_v1_t;

/* nvmlProcessInfo_v2_t and _v3_t share this 24-byte layout. */
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

struct nvmlDevice_st;

/* nvmlEventData_t: 32 bytes on LP64. */
typedef struct {
    struct nvmlDevice_st *device;
    unsigned long long eventType;
    unsigned long long eventData;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlEventData_t;

_Static_assert(sizeof(nvmlEventData_t) == 32, "event data struct is 32 bytes");
_Static_assert(sizeof(nvmlProcessInfo_t) == 24, "process struct is 24 bytes");
_Static_assert(sizeof(nvmlProcessInfo_v1_t) == 16, "v1 process struct is 16 bytes");

/* ---- scenario model --------------------------------------------------- */

enum field {
    F_NAME,
    F_INDEX,
    F_UTIL,
    F_MEMORY,
    F_POWER,
    F_POWER_LIMIT,
    F_DEFAULT_LIMIT,
    F_CONSTRAINTS,
    F_SET_LIMIT,
    F_TEMP,
    F_SM_CLOCK,
    F_MEM_CLOCK,
    F_GRAPHICS_CLOCK,
    F_PROCESSES,
    F_GRAPHICS_PROCESSES,
    F_ENERGY,
    F_ECC,
    F_EVENTS,
    F_PCI,
    F_PROCESS_UTIL,
    F_MIG,
    F_COUNT
};

static const char *const FIELD_NAMES[F_COUNT] = {
    "name",     "index",       "util",           "memory",    "power",
    "power_limit", "default_limit", "constraints", "set_limit", "temp",
    "sm_clock", "mem_clock",   "graphics_clock", "processes", "graphics_processes",
    "energy",   "ecc",         "events",         "pci",       "process_util",
    "mig",
};

#define MAX_GPUS 64
#define MAX_PROCS 4096
#define MAX_HANDLES 256
#define UUID_LEN 96
#define NAME_LEN 96
#define DRIVER_LEN 80
#define MAX_XIDS 64
#define MAX_EVENT_SETS 16

struct gpu {
    char uuid[UUID_LEN];
    char name[NAME_LEN];
    char pci_bus_id[32];
    unsigned int util, mem_util;
    unsigned long long mem_total, mem_used, mem_reserved;
    unsigned int power, limit, default_limit, min_limit, max_limit;
    unsigned int temp, sm_clock, mem_clock, graphics_clock;
    unsigned long long energy, ecc_sbe, ecc_dbe;
    unsigned int xids[MAX_XIDS];
    int nxids;
    int has_limit;
    int lost;
    int mig;
    nvmlReturn_t fail[F_COUNT];
};

struct proc {
    int gpu;
    unsigned int pid;
    unsigned long long mem;
    int graphics;
    int has_sample;
    unsigned int sm, mem_util;
    unsigned long long ts;
    unsigned int gi, ci;
};

struct scenario {
    char driver[DRIVER_LEN];
    nvmlReturn_t init_error, count_error, driver_error;
    int ngpus;
    struct gpu gpus[MAX_GPUS];
    int nprocs;
    struct proc procs[MAX_PROCS];
};

/* A handle names a GPU by UUID, so it keeps pointing at the same GPU when the
 * scenario is rewritten; a GPU that left the scenario is "lost". */
struct nvmlDevice_st {
    int used;
    char uuid[UUID_LEN];
    int has_limit; /* in-memory limit, used when no state file is configured */
    unsigned int limit;
};
typedef struct nvmlDevice_st *nvmlDevice_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int init_count;
static struct scenario cur, parsing;
static int present; /* the scenario file exists and was read */
static int valid;   /* ... and parsed without error */
static struct {
    int have;
    char path[PATH_MAX];
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim, ctim;
} seen;
static struct nvmlDevice_st handles[MAX_HANDLES];

/* An event set: per handle slot, the event types registered and the XIDs delivered. */
struct nvmlEventSet_st {
    int used;
    unsigned long long types[MAX_HANDLES];
    int delivered[MAX_HANDLES];
};
typedef struct nvmlEventSet_st *nvmlEventSet_t;
static struct nvmlEventSet_st event_sets[MAX_EVENT_SETS];

/* ---- error names ------------------------------------------------------ */

static const struct {
    nvmlReturn_t code;
    const char *name;
    const char *text;
} ERRORS[] = {
    {NVML_SUCCESS, "SUCCESS", "Success"},
    {NVML_ERROR_UNINITIALIZED, "UNINITIALIZED", "Uninitialized"},
    {NVML_ERROR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "Invalid Argument"},
    {NVML_ERROR_NOT_SUPPORTED, "NOT_SUPPORTED", "Not Supported"},
    {NVML_ERROR_NO_PERMISSION, "NO_PERMISSION", "Insufficient Permissions"},
    {NVML_ERROR_ALREADY_INITIALIZED, "ALREADY_INITIALIZED", "Already Initialized"},
    {NVML_ERROR_NOT_FOUND, "NOT_FOUND", "Not Found"},
    {NVML_ERROR_INSUFFICIENT_SIZE, "INSUFFICIENT_SIZE", "Insufficient Size"},
    {NVML_ERROR_INSUFFICIENT_POWER, "INSUFFICIENT_POWER", "Insufficient External Power"},
    {NVML_ERROR_DRIVER_NOT_LOADED, "DRIVER_NOT_LOADED", "Driver Not Loaded"},
    {NVML_ERROR_TIMEOUT, "TIMEOUT", "Timeout"},
    {NVML_ERROR_IRQ_ISSUE, "IRQ_ISSUE", "Interrupt Request Issue"},
    {NVML_ERROR_LIBRARY_NOT_FOUND, "LIBRARY_NOT_FOUND", "NVML Shared Library Not Found"},
    {NVML_ERROR_FUNCTION_NOT_FOUND, "FUNCTION_NOT_FOUND", "Function Not Found"},
    {NVML_ERROR_CORRUPTED_INFOROM, "CORRUPTED_INFOROM", "Corrupted infoROM"},
    {NVML_ERROR_GPU_IS_LOST, "GPU_IS_LOST", "GPU is lost"},
    {NVML_ERROR_RESET_REQUIRED, "RESET_REQUIRED", "GPU requires restart"},
    {NVML_ERROR_OPERATING_SYSTEM, "OPERATING_SYSTEM",
     "The operating system has blocked the request."},
    {NVML_ERROR_LIB_RM_VERSION_MISMATCH, "LIB_RM_VERSION_MISMATCH",
     "RM has detected an NVML/RM version mismatch."},
    {NVML_ERROR_IN_USE, "IN_USE", "In use by another client"},
    {NVML_ERROR_MEMORY, "MEMORY", "Insufficient Memory"},
    {NVML_ERROR_NO_DATA, "NO_DATA", "No data"},
    {NVML_ERROR_ARGUMENT_VERSION_MISMATCH, "ARGUMENT_VERSION_MISMATCH",
     "Argument version mismatch"},
    {NVML_ERROR_UNKNOWN, "UNKNOWN", "Unknown Error"},
};

#define NERRORS ((int)(sizeof(ERRORS) / sizeof(ERRORS[0])))

/* Returns the code for NAME (or a decimal number), or -1. */
static nvmlReturn_t error_code(const char *name) {
    char *end;
    long n;
    for (int i = 0; i < NERRORS; i++)
        if (strcmp(ERRORS[i].name, name) == 0) return ERRORS[i].code;
    errno = 0;
    n = strtol(name, &end, 10);
    if (errno == 0 && *name && *end == '\0' && n > 0 && n <= 100000) return (nvmlReturn_t)n;
    return -1;
}

/* ---- scenario parsing ------------------------------------------------- */

static int parse_line_no;

static int parse_fail(const char *path, const char *what, const char *detail) {
    fprintf(stderr, "fake-nvml: %s:%d: %s%s%s\n", path, parse_line_no, what,
            detail ? ": " : "", detail ? detail : "");
    return -1;
}

/* Splits LINE in place into words; "quoted strings" may hold spaces. A word of the
 * form key="a b" keeps the key and loses the quotes. Returns the word count. */
static int split_words(char *line, char **words, int max) {
    int n = 0;
    char *p = line;
    while (*p) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) break;
        if (n == max) return -1;
        words[n++] = p;
        char *out = p;
        int quoted = 0;
        while (*p && (quoted || (*p != ' ' && *p != '\t'))) {
            if (*p == '"') {
                quoted = !quoted;
                p++;
                continue;
            }
            *out++ = *p++;
        }
        if (quoted) return -1;
        if (*p) p++;
        *out = '\0';
    }
    return n;
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out) {
    char *end;
    unsigned long long v;
    if (!*s || *s == '-') return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v > max) return -1;
    *out = v;
    return 0;
}

static int field_index(const char *name) {
    for (int i = 0; i < F_COUNT; i++)
        if (strcmp(FIELD_NAMES[i], name) == 0) return i;
    return -1;
}

/* Applies "f1,f2" (with code CODE) or "f1:CODE1,f2:CODE2" (CODE < 0) to g->fail. */
static int parse_field_list(struct gpu *g, char *list, nvmlReturn_t code) {
    char *save = NULL;
    for (char *item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        nvmlReturn_t c = code;
        if (c < 0) {
            char *colon = strchr(item, ':');
            if (!colon) return -1;
            *colon = '\0';
            c = error_code(colon + 1);
            if (c <= 0) return -1;
        }
        int f = field_index(item);
        if (f < 0) return -1;
        g->fail[f] = c;
    }
    return 0;
}

static void gpu_defaults(struct gpu *g) {
    memset(g, 0, sizeof(*g));
    snprintf(g->name, sizeof(g->name), "%s", "NVIDIA H100 80GB HBM3");
    g->mem_total = 85520809984ULL; /* 81559 MiB, as an H100 80GB reports it */
    g->power = 100000;
    g->default_limit = 700000;
    g->min_limit = 200000;
    g->max_limit = 700000;
    g->temp = 40;
    g->sm_clock = 1980;
    g->mem_clock = 2619;
    g->graphics_clock = 1980;
}

static int parse_gpu(const char *path, struct scenario *s, char **w, int n) {
    unsigned long long v;
    struct gpu *g;
    if (n < 2 || parse_uint(w[1], MAX_GPUS - 1, &v)) return parse_fail(path, "bad gpu index", w[1]);
    if ((int)v != s->ngpus) return parse_fail(path, "gpu indexes must be 0, 1, 2... in order", w[1]);
    g = &s->gpus[s->ngpus];
    gpu_defaults(g);
    for (int i = 2; i < n; i++) {
        char *key = w[i], *val = strchr(w[i], '=');
        if (!val) return parse_fail(path, "expected key=value", key);
        *val++ = '\0';
        unsigned int *u32 = NULL;
        unsigned long long *u64 = NULL;
        if (strcmp(key, "uuid") == 0) {
            if (!*val || strlen(val) >= UUID_LEN) return parse_fail(path, "bad uuid", val);
            snprintf(g->uuid, sizeof(g->uuid), "%s", val);
        } else if (strcmp(key, "name") == 0) {
            if (strlen(val) >= NAME_LEN) return parse_fail(path, "name too long", val);
            snprintf(g->name, sizeof(g->name), "%s", val);
        } else if (strcmp(key, "not_supported") == 0) {
            if (parse_field_list(g, val, NVML_ERROR_NOT_SUPPORTED))
                return parse_fail(path, "bad not_supported list", val);
        } else if (strcmp(key, "fail") == 0) {
            if (parse_field_list(g, val, -1)) return parse_fail(path, "bad fail list", val);
        } else if (strcmp(key, "lost") == 0) {
            if (parse_uint(val, 1, &v)) return parse_fail(path, "lost must be 0 or 1", val);
            g->lost = (int)v;
        } else if (strcmp(key, "mig") == 0) {
            if (parse_uint(val, 1, &v)) return parse_fail(path, "mig must be 0 or 1", val);
            g->mig = (int)v;
        } else if (strcmp(key, "no_permission") == 0) {
            if (parse_uint(val, 1, &v)) return parse_fail(path, "no_permission must be 0 or 1", val);
            if (v) g->fail[F_SET_LIMIT] = NVML_ERROR_NO_PERMISSION;
        } else if (strcmp(key, "pci_bus_id") == 0) {
            if (!*val || strlen(val) >= sizeof(g->pci_bus_id))
                return parse_fail(path, "bad pci_bus_id", val);
            snprintf(g->pci_bus_id, sizeof(g->pci_bus_id), "%s", val);
        } else if (strcmp(key, "xids") == 0) {
            char *save = NULL;
            g->nxids = 0;
            for (char *x = strtok_r(val, ",", &save); x; x = strtok_r(NULL, ",", &save)) {
                if (g->nxids == MAX_XIDS || parse_uint(x, 0xFFFFFFFFu, &v))
                    return parse_fail(path, "bad xids list", x);
                g->xids[g->nxids++] = (unsigned int)v;
            }
        } else if (strcmp(key, "util") == 0) u32 = &g->util;
        else if (strcmp(key, "mem_util") == 0) u32 = &g->mem_util;
        else if (strcmp(key, "mem_total") == 0) u64 = &g->mem_total;
        else if (strcmp(key, "mem_used") == 0) u64 = &g->mem_used;
        else if (strcmp(key, "mem_reserved") == 0) u64 = &g->mem_reserved;
        else if (strcmp(key, "power") == 0) u32 = &g->power;
        else if (strcmp(key, "limit") == 0) {
            u32 = &g->limit;
            g->has_limit = 1;
        } else if (strcmp(key, "default_limit") == 0) u32 = &g->default_limit;
        else if (strcmp(key, "min_limit") == 0) u32 = &g->min_limit;
        else if (strcmp(key, "max_limit") == 0) u32 = &g->max_limit;
        else if (strcmp(key, "temp") == 0) u32 = &g->temp;
        else if (strcmp(key, "sm_clock") == 0) u32 = &g->sm_clock;
        else if (strcmp(key, "mem_clock") == 0) u32 = &g->mem_clock;
        else if (strcmp(key, "graphics_clock") == 0) u32 = &g->graphics_clock;
        else if (strcmp(key, "energy") == 0) u64 = &g->energy;
        else if (strcmp(key, "ecc_sbe") == 0) u64 = &g->ecc_sbe;
        else if (strcmp(key, "ecc_dbe") == 0) u64 = &g->ecc_dbe;
        else return parse_fail(path, "unknown gpu key", key);
        if (u32) {
            if (parse_uint(val, 0xFFFFFFFFu, &v)) return parse_fail(path, "bad number", val);
            *u32 = (unsigned int)v;
        } else if (u64) {
            if (parse_uint(val, ~0ULL - 1, &v)) return parse_fail(path, "bad number", val);
            *u64 = v;
        }
    }
    if (!g->uuid[0]) return parse_fail(path, "gpu without uuid", NULL);
    for (int i = 0; i < s->ngpus; i++)
        if (strcmp(s->gpus[i].uuid, g->uuid) == 0) return parse_fail(path, "duplicate uuid", g->uuid);
    if (g->mem_used + g->mem_reserved > g->mem_total)
        return parse_fail(path, "mem_used + mem_reserved exceeds mem_total", g->uuid);
    if (g->min_limit > g->max_limit) return parse_fail(path, "min_limit > max_limit", g->uuid);
    if (!g->has_limit) g->limit = g->default_limit;
    if (!g->pci_bus_id[0])
        snprintf(g->pci_bus_id, sizeof(g->pci_bus_id), "00000000:%02X:00.0", s->ngpus + 1);
    s->ngpus++;
    return 0;
}

static int parse_proc(const char *path, struct scenario *s, char **w, int n) {
    unsigned long long v;
    struct proc *p;
    int have_pid = 0;
    if (s->nprocs == MAX_PROCS) return parse_fail(path, "too many processes", NULL);
    p = &s->procs[s->nprocs];
    memset(p, 0, sizeof(*p));
    p->mem = NVML_VALUE_NOT_AVAILABLE_ULL;
    p->ts = 0; /* now */
    p->gi = NO_INSTANCE;
    p->ci = NO_INSTANCE;
    if (n < 2 || parse_uint(w[1], MAX_GPUS - 1, &v) || (int)v >= s->ngpus)
        return parse_fail(path, "proc must name an earlier gpu index", n < 2 ? NULL : w[1]);
    p->gpu = (int)v;
    for (int i = 2; i < n; i++) {
        char *key = w[i], *val = strchr(w[i], '=');
        if (!val) return parse_fail(path, "expected key=value", key);
        *val++ = '\0';
        if (strcmp(key, "pid") == 0) {
            if (parse_uint(val, 0xFFFFFFFFu, &v)) return parse_fail(path, "bad pid", val);
            p->pid = (unsigned int)v;
            have_pid = 1;
        } else if (strcmp(key, "mem") == 0) {
            if (parse_uint(val, ~0ULL - 1, &v)) return parse_fail(path, "bad mem", val);
            p->mem = v;
        } else if (strcmp(key, "type") == 0) {
            if (strcmp(val, "compute") == 0) p->graphics = 0;
            else if (strcmp(val, "graphics") == 0) p->graphics = 1;
            else return parse_fail(path, "type must be compute or graphics", val);
        } else if (strcmp(key, "sm") == 0 || strcmp(key, "mem_util") == 0) {
            if (parse_uint(val, 100, &v)) return parse_fail(path, "bad utilisation", val);
            *(key[0] == 's' ? &p->sm : &p->mem_util) = (unsigned int)v;
            p->has_sample = 1;
        } else if (strcmp(key, "ts") == 0) {
            if (parse_uint(val, ~0ULL - 1, &v)) return parse_fail(path, "bad ts", val);
            p->ts = v;
        } else if (strcmp(key, "gi") == 0 || strcmp(key, "ci") == 0) {
            if (parse_uint(val, 0xFFFFFFFEu, &v)) return parse_fail(path, "bad instance id", val);
            *(key[0] == 'g' ? &p->gi : &p->ci) = (unsigned int)v;
        } else {
            return parse_fail(path, "unknown proc key", key);
        }
    }
    if (!have_pid) return parse_fail(path, "proc without pid", NULL);
    s->nprocs++;
    return 0;
}

static int parse_scenario(const char *path, FILE *f, struct scenario *s) {
    char line[4096];
    char *w[64];
    memset(s, 0, sizeof(*s));
    snprintf(s->driver, sizeof(s->driver), "%s", "550.54.15");
    parse_line_no = 0;
    while (fgets(line, sizeof(line), f)) {
        parse_line_no++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n') line[--len] = '\0';
        else if (!feof(f)) return parse_fail(path, "line too long", NULL);
        if (len && line[len - 1] == '\r') line[--len] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p || *p == '#') continue;
        int n = split_words(p, w, 64);
        if (n < 0) return parse_fail(path, "unbalanced quotes or too many words", NULL);
        if (strcmp(w[0], "gpu") == 0) {
            if (s->ngpus == MAX_GPUS) return parse_fail(path, "too many gpus", NULL);
            if (parse_gpu(path, s, w, n)) return -1;
        } else if (strcmp(w[0], "proc") == 0) {
            if (parse_proc(path, s, w, n)) return -1;
        } else if (strcmp(w[0], "driver") == 0) {
            if (n != 2 || strlen(w[1]) >= DRIVER_LEN) return parse_fail(path, "bad driver line", NULL);
            snprintf(s->driver, sizeof(s->driver), "%s", w[1]);
        } else if (strcmp(w[0], "error") == 0) {
            nvmlReturn_t code;
            if (n != 3 || (code = error_code(w[2])) <= 0)
                return parse_fail(path, "expected: error CALL CODE", NULL);
            if (strcmp(w[1], "init") == 0) s->init_error = code;
            else if (strcmp(w[1], "count") == 0) s->count_error = code;
            else if (strcmp(w[1], "driver_version") == 0) s->driver_error = code;
            else return parse_fail(path, "unknown call", w[1]);
        } else {
            return parse_fail(path, "unknown statement", w[0]);
        }
    }
    if (ferror(f)) return parse_fail(path, "read error", strerror(errno));
    return 0;
}

/* Re-reads the scenario when the file named by the environment changed. */
static void refresh(void) {
    const char *path = getenv("BACKSTOP_FAKE_NVML_SCENARIO");
    struct stat st;
    FILE *f;
    if (!path || !*path || strlen(path) >= PATH_MAX || stat(path, &st) != 0) {
        present = 0;
        seen.have = 0;
        return;
    }
    if (seen.have && strcmp(seen.path, path) == 0 && seen.dev == st.st_dev &&
        seen.ino == st.st_ino && seen.size == st.st_size &&
        seen.mtim.tv_sec == st.st_mtim.tv_sec && seen.mtim.tv_nsec == st.st_mtim.tv_nsec &&
        seen.ctim.tv_sec == st.st_ctim.tv_sec && seen.ctim.tv_nsec == st.st_ctim.tv_nsec)
        return;
    f = fopen(path, "r");
    if (!f) {
        present = 0;
        seen.have = 0;
        return;
    }
    /* Remember the stat of what was actually read. */
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        present = 0;
        seen.have = 0;
        return;
    }
    present = 1;
    if (parse_scenario(path, f, &parsing) == 0) {
        memcpy(&cur, &parsing, sizeof(cur));
        valid = 1;
    } else {
        valid = 0;
    }
    fclose(f);
    seen.have = 1;
    snprintf(seen.path, sizeof(seen.path), "%s", path);
    seen.dev = st.st_dev;
    seen.ino = st.st_ino;
    seen.size = st.st_size;
    seen.mtim = st.st_mtim;
    seen.ctim = st.st_ctim;
}

/* ---- power-limit state file ------------------------------------------- */

#define MAX_STATE 256

struct limit_entry {
    char uuid[UUID_LEN];
    unsigned int limit;
};

static int read_state(const char *path, struct limit_entry *e, int max) {
    FILE *f = fopen(path, "r");
    char line[256];
    int n = 0;
    if (!f) return 0;
    while (n < max && fgets(line, sizeof(line), f)) {
        char uuid[UUID_LEN];
        unsigned int limit;
        if (sscanf(line, "%95s %u", uuid, &limit) == 2) {
            snprintf(e[n].uuid, sizeof(e[n].uuid), "%s", uuid);
            e[n].limit = limit;
            n++;
        }
    }
    fclose(f);
    return n;
}

static int write_state(const char *path, const char *uuid, unsigned int limit) {
    static struct limit_entry e[MAX_STATE];
    char tmp[PATH_MAX];
    int n = read_state(path, e, MAX_STATE), i;
    FILE *f;
    for (i = 0; i < n; i++)
        if (strcmp(e[i].uuid, uuid) == 0) break;
    if (i == n) {
        if (n == MAX_STATE) return -1;
        snprintf(e[n].uuid, sizeof(e[n].uuid), "%s", uuid);
        n++;
    }
    e[i].limit = limit;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp)) return -1;
    f = fopen(tmp, "w");
    if (!f) return -1;
    for (i = 0; i < n; i++) fprintf(f, "%s %u\n", e[i].uuid, e[i].limit);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fclose(f);
        unlink(tmp);
        return -1;
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static unsigned int current_limit(const struct gpu *g, const struct nvmlDevice_st *h) {
    const char *path = getenv("BACKSTOP_FAKE_NVML_STATE");
    if (path && *path) {
        static struct limit_entry e[MAX_STATE];
        int n = read_state(path, e, MAX_STATE);
        for (int i = 0; i < n; i++)
            if (strcmp(e[i].uuid, g->uuid) == 0) return e[i].limit;
    } else if (h->has_limit) {
        return h->limit;
    }
    return g->limit;
}

/* ---- handles ---------------------------------------------------------- */

static nvmlDevice_t handle_for(const char *uuid) {
    int free_slot = -1;
    for (int i = 0; i < MAX_HANDLES; i++) {
        if (handles[i].used && strcmp(handles[i].uuid, uuid) == 0) return &handles[i];
        if (!handles[i].used && free_slot < 0) free_slot = i;
    }
    if (free_slot < 0) return NULL;
    memset(&handles[free_slot], 0, sizeof(handles[free_slot]));
    handles[free_slot].used = 1;
    snprintf(handles[free_slot].uuid, sizeof(handles[free_slot].uuid), "%s", uuid);
    return &handles[free_slot];
}

/* Common checks of the library state; call with mu held. */
static nvmlReturn_t ready(void) {
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    refresh();
    if (!present) return NVML_ERROR_DRIVER_NOT_LOADED;
    if (!valid) return NVML_ERROR_UNKNOWN;
    return NVML_SUCCESS;
}

/* Resolves DEV to its GPU and, if FIELD >= 0, applies the GPU's failure for it. */
static nvmlReturn_t device(nvmlDevice_t dev, int field, struct gpu **out, int *index) {
    nvmlReturn_t r = ready();
    if (r) return r;
    if (dev < handles || dev >= handles + MAX_HANDLES || !dev->used)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (int i = 0; i < cur.ngpus; i++) {
        if (strcmp(cur.gpus[i].uuid, dev->uuid) != 0) continue;
        if (cur.gpus[i].lost) return NVML_ERROR_GPU_IS_LOST;
        if (field >= 0 && cur.gpus[i].fail[field]) return cur.gpus[i].fail[field];
        *out = &cur.gpus[i];
        if (index) *index = i;
        return NVML_SUCCESS;
    }
    return NVML_ERROR_GPU_IS_LOST; /* the GPU left the scenario: fell off the bus */
}

/* device() for a call that writes its result through OUT: no OUT is an invalid argument,
 * reported after the GPU's own errors. */
static nvmlReturn_t device_out(nvmlDevice_t dev, int field, struct gpu **g, int *index,
                               const void *out) {
    nvmlReturn_t r = device(dev, field, g, index);
    if (r) return r;
    return out ? NVML_SUCCESS : NVML_ERROR_INVALID_ARGUMENT;
}

static nvmlReturn_t copy_string(const char *s, char *buf, unsigned int length) {
    if (!buf) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(s) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(buf, s, strlen(s) + 1);
    return NVML_SUCCESS;
}

#define LOCKED(expr)                  \
    do {                              \
        nvmlReturn_t r_;              \
        pthread_mutex_lock(&mu);      \
        r_ = (expr);                  \
        pthread_mutex_unlock(&mu);    \
        return r_;                    \
    } while (0)

/* ---- init / shutdown / system ----------------------------------------- */

static nvmlReturn_t do_init(void) {
    refresh();
    if (!present) return NVML_ERROR_DRIVER_NOT_LOADED;
    if (!valid) return NVML_ERROR_UNKNOWN;
    if (cur.init_error) return cur.init_error;
    init_count++;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    LOCKED(do_init());
}
API nvmlReturn_t nvmlInit_v2(void) { LOCKED(do_init()); }
API nvmlReturn_t nvmlInit(void) { LOCKED(do_init()); }

static nvmlReturn_t do_shutdown(void) {
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    init_count--;
    return NVML_SUCCESS;
}
API nvmlReturn_t nvmlShutdown(void) { LOCKED(do_shutdown()); }

API const char *nvmlErrorString(nvmlReturn_t result) {
    for (int i = 0; i < NERRORS; i++)
        if (ERRORS[i].code == result) return ERRORS[i].text;
    return "Unknown Error";
}

static nvmlReturn_t do_driver_version(char *version, unsigned int length) {
    nvmlReturn_t r = ready();
    if (r) return r;
    if (cur.driver_error) return cur.driver_error;
    return copy_string(cur.driver, version, length);
}
API nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    LOCKED(do_driver_version(version, length));
}

static nvmlReturn_t do_nvml_version(char *version, unsigned int length) {
    nvmlReturn_t r = ready();
    if (r) return r;
    char v[DRIVER_LEN + 8];
    snprintf(v, sizeof(v), "12.%s", cur.driver);
    return copy_string(v, version, length);
}
API nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    LOCKED(do_nvml_version(version, length));
}

/* ---- enumeration ------------------------------------------------------ */

static nvmlReturn_t do_count(unsigned int *count) {
    nvmlReturn_t r = ready();
    if (r) return r;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    if (cur.count_error) return cur.count_error;
    *count = (unsigned int)cur.ngpus;
    return NVML_SUCCESS;
}
API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) { LOCKED(do_count(count)); }
API nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { LOCKED(do_count(count)); }

static nvmlReturn_t do_by_index(unsigned int index, nvmlDevice_t *device_out) {
    nvmlReturn_t r = ready();
    if (r) return r;
    if (!device_out || index >= (unsigned int)cur.ngpus) return NVML_ERROR_INVALID_ARGUMENT;
    if (cur.gpus[index].lost) return NVML_ERROR_GPU_IS_LOST;
    nvmlDevice_t h = handle_for(cur.gpus[index].uuid);
    if (!h) return NVML_ERROR_MEMORY;
    *device_out = h;
    return NVML_SUCCESS;
}
API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    LOCKED(do_by_index(index, device));
}
API nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device) {
    LOCKED(do_by_index(index, device));
}

static nvmlReturn_t do_by_uuid(const char *uuid, nvmlDevice_t *device_out) {
    nvmlReturn_t r = ready();
    if (r) return r;
    if (!uuid || !device_out) return NVML_ERROR_INVALID_ARGUMENT;
    for (int i = 0; i < cur.ngpus; i++) {
        if (strcmp(cur.gpus[i].uuid, uuid) != 0) continue;
        if (cur.gpus[i].lost) return NVML_ERROR_GPU_IS_LOST;
        nvmlDevice_t h = handle_for(uuid);
        if (!h) return NVML_ERROR_MEMORY;
        *device_out = h;
        return NVML_SUCCESS;
    }
    return NVML_ERROR_NOT_FOUND;
}
API nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    LOCKED(do_by_uuid(uuid, device));
}

/* ---- identity --------------------------------------------------------- */

static nvmlReturn_t do_name(nvmlDevice_t dev, char *name, unsigned int length) {
    struct gpu *g;
    nvmlReturn_t r = device(dev, F_NAME, &g, NULL);
    return r ? r : copy_string(g->name, name, length);
}
API nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t dev, char *name, unsigned int length) {
    LOCKED(do_name(dev, name, length));
}

static nvmlReturn_t do_uuid(nvmlDevice_t dev, char *uuid, unsigned int length) {
    struct gpu *g;
    nvmlReturn_t r = device(dev, -1, &g, NULL);
    return r ? r : copy_string(g->uuid, uuid, length);
}
API nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t dev, char *uuid, unsigned int length) {
    LOCKED(do_uuid(dev, uuid, length));
}

static nvmlReturn_t do_index(nvmlDevice_t dev, unsigned int *index) {
    struct gpu *g;
    int i;
    nvmlReturn_t r = device_out(dev, F_INDEX, &g, &i, index);
    if (!r) *index = (unsigned int)i;
    return r;
}
API nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t dev, unsigned int *index) {
    LOCKED(do_index(dev, index));
}

/* ---- utilisation, memory, temperature, clocks ------------------------- */

static nvmlReturn_t do_util(nvmlDevice_t dev, nvmlUtilization_t *u) {
    struct gpu *g;
    nvmlReturn_t r = device_out(dev, F_UTIL, &g, NULL, u);
    if (r) return r;
    u->gpu = g->util;
    u->memory = g->mem_util;
    return NVML_SUCCESS;
}
API nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t dev, nvmlUtilization_t *u) {
    LOCKED(do_util(dev, u));
}

/* v1 counts reserved memory as used, like the real call. */
static nvmlReturn_t do_memory(nvmlDevice_t dev, nvmlMemory_t *m) {
    struct gpu *g;
    nvmlReturn_t r = device_out(dev, F_MEMORY, &g, NULL, m);
    if (r) return r;
    m->total = g->mem_total;
    m->used = g->mem_used + g->mem_reserved;
    m->free = g->mem_total - m->used;
    return NVML_SUCCESS;
}
API nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t dev, nvmlMemory_t *m) {
    LOCKED(do_memory(dev, m));
}

static nvmlReturn_t do_memory_v2(nvmlDevice_t dev, nvmlMemory_v2_t *m) {
    struct gpu *g;
    nvmlReturn_t r = device_out(dev, F_MEMORY, &g, NULL, m);
    if (r) return r;
    if (m->version != NVML_MEMORY_V2_VERSION) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    m->total = g->mem_total;
    m->reserved = g->mem_reserved;
    m->used = g->mem_used;
    m->free = g->mem_total - g->mem_used - g->mem_reserved;
    return NVML_SUCCESS;
}
API nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t dev, nvmlMemory_v2_t *m) {
    LOCKED(do_memory_v2(dev, m));
}

/* The value of FIELD, one of the unsigned-int readings, for GPU g behind handle h. */
static unsigned int reading(const struct gpu *g, const struct nvmlDevice_st *h, int field) {
    switch (field) {
    case F_TEMP: return g->temp;
    case F_SM_CLOCK: return g->sm_clock;
    case F_MEM_CLOCK: return g->mem_clock;
    case F_GRAPHICS_CLOCK: return g->graphics_clock;
    case F_POWER_LIMIT: return current_limit(g, h);
    case F_DEFAULT_LIMIT: return g->default_limit;
    case F_POWER: { /* drawn power, never above the limit in force */
        unsigned int limit = current_limit(g, h);
        return g->power < limit ? g->power : limit;
    }
    default: return 0;
    }
}

/* A call that reads one unsigned int of a GPU (FIELD) into OUT. */
static nvmlReturn_t read_uint(nvmlDevice_t dev, int field, unsigned int *out) {
    struct gpu *g;
    nvmlReturn_t r = device_out(dev, field, &g, NULL, out);
    if (!r) *out = reading(g, dev, field);
    return r;
}

/* An exported call that reads one unsigned int of a GPU. */
#define UINT_READING(name, field)                                  \
    API nvmlReturn_t name(nvmlDevice_t dev, unsigned int *out) { \
        LOCKED(read_uint(dev, field, out));                        \
    }

static nvmlReturn_t do_temp(nvmlDevice_t dev, int sensor, unsigned int *temp) {
    /* another sensor is an invalid argument, as a missing TEMP is */
    return read_uint(dev, F_TEMP, sensor == NVML_TEMPERATURE_GPU ? temp : NULL);
}
API nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t dev, int sensor, unsigned int *temp) {
    LOCKED(do_temp(dev, sensor, temp));
}

static nvmlReturn_t do_clock(nvmlDevice_t dev, int type, unsigned int *clock) {
    switch (type) {
    case NVML_CLOCK_GRAPHICS: return read_uint(dev, F_GRAPHICS_CLOCK, clock);
    case NVML_CLOCK_SM: return read_uint(dev, F_SM_CLOCK, clock);
    case NVML_CLOCK_MEM: return read_uint(dev, F_MEM_CLOCK, clock);
    default: {
        nvmlReturn_t r = ready();
        return r ? r : NVML_ERROR_INVALID_ARGUMENT;
    }
    }
}
API nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t dev, int type, unsigned int *clock) {
    LOCKED(do_clock(dev, type, clock));
}

/* ---- power ------------------------------------------------------------ */

UINT_READING(nvmlDeviceGetPowerUsage, F_POWER)
UINT_READING(nvmlDeviceGetPowerManagementLimit, F_POWER_LIMIT)
UINT_READING(nvmlDeviceGetEnforcedPowerLimit, F_POWER_LIMIT)
UINT_READING(nvmlDeviceGetPowerManagementDefaultLimit, F_DEFAULT_LIMIT)

static nvmlReturn_t do_constraints(nvmlDevice_t dev, unsigned int *min, unsigned int *max) {
    struct gpu *g;
    nvmlReturn_t r = device(dev, F_CONSTRAINTS, &g, NULL);
    if (r) return r;
    if (!min || !max) return NVML_ERROR_INVALID_ARGUMENT;
    *min = g->min_limit;
    *max = g->max_limit;
    return NVML_SUCCESS;
}
API nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t dev, unsigned int *min,
                                                              unsigned int *max) {
    LOCKED(do_constraints(dev, min, max));
}

static nvmlReturn_t do_set_limit(nvmlDevice_t dev, unsigned int limit) {
    struct gpu *g;
    nvmlReturn_t r = device(dev, F_SET_LIMIT, &g, NULL);
    if (r) return r;
    if (limit < g->min_limit || limit > g->max_limit) return NVML_ERROR_INVALID_ARGUMENT;
    const char *path = getenv("BACKSTOP_FAKE_NVML_STATE");
    if (path && *path) {
        if (write_state(path, g->uuid, limit) != 0) return NVML_ERROR_UNKNOWN;
    } else {
        dev->has_limit = 1;
        dev->limit = limit;
    }
    return NVML_SUCCESS;
}
API nvmlReturn_t nvmlDeviceSetPowerManagementLimit(nvmlDevice_t dev, unsigned int limit) {
    LOCKED(do_set_limit(dev, limit));
}

/* ---- PCI -------------------------------------------------------------- */

static nvmlReturn_t do_pci(nvmlDevice_t dev, nvmlPciInfo_t *pci) {
    struct gpu *g;
    unsigned int domain = 0, bus = 0, slot = 0, function = 0;
    nvmlReturn_t r = device_out(dev, F_PCI, &g, NULL, pci);
    if (r) return r;
    memset(pci, 0, sizeof(*pci));
    sscanf(g->pci_bus_id, "%x:%x:%x.%x", &domain, &bus, &slot, &function);
    pci->domain = domain;
    pci->bus = bus;
    pci->device = slot;
    pci->pciDeviceId = 0x233010DEu; /* H100 SXM5, NVIDIA's vendor id */
    snprintf(pci->busId, sizeof(pci->busId), "%s", g->pci_bus_id);
    snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "%04X:%02X:%02X.%X", domain & 0xFFFF,
             bus, slot, function);
    return NVML_SUCCESS;
}
API nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t dev, nvmlPciInfo_t *pci) {
    LOCKED(do_pci(dev, pci));
}
API nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t dev, nvmlPciInfo_t *pci) {
    LOCKED(do_pci(dev, pci));
}

/* ---- energy, ECC ----------------------------------------------------- */

static nvmlReturn_t do_energy(nvmlDevice_t dev, unsigned long long *energy) {
    struct gpu *g;
    nvmlReturn_t r = device_out(dev, F_ENERGY, &g, NULL, energy);
    if (!r) *energy = g->energy;
    return r;
}
API nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t dev,
                                                      unsigned long long *energy) {
    LOCKED(do_energy(dev, energy));
}

static nvmlReturn_t do_ecc(nvmlDevice_t dev, int type, int counter, unsigned long long *count) {
    struct gpu *g;
    nvmlReturn_t r = device_out(dev, F_ECC, &g, NULL, count);
    if (r) return r;
    if (counter != NVML_VOLATILE_ECC) return NVML_ERROR_NOT_SUPPORTED; /* no aggregate counts */
    if (type == NVML_MEMORY_ERROR_TYPE_CORRECTED) *count = g->ecc_sbe;
    else if (type == NVML_MEMORY_ERROR_TYPE_UNCORRECTED) *count = g->ecc_dbe;
    else return NVML_ERROR_INVALID_ARGUMENT;
    return NVML_SUCCESS;
}
API nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t dev, int type, int counter,
                                             unsigned long long *count) {
    LOCKED(do_ecc(dev, type, counter, count));
}

/* ---- events (XIDs) ---------------------------------------------------- */

static nvmlReturn_t do_event_set_create(nvmlEventSet_t *set) {
    nvmlReturn_t r = ready();
    if (r) return r;
    if (!set) return NVML_ERROR_INVALID_ARGUMENT;
    for (int i = 0; i < MAX_EVENT_SETS; i++) {
        if (event_sets[i].used) continue;
        memset(&event_sets[i], 0, sizeof(event_sets[i]));
        event_sets[i].used = 1;
        *set = &event_sets[i];
        return NVML_SUCCESS;
    }
    return NVML_ERROR_MEMORY;
}
API nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) { LOCKED(do_event_set_create(set)); }

static int valid_set(nvmlEventSet_t set) {
    return set >= event_sets && set < event_sets + MAX_EVENT_SETS && set->used;
}

static nvmlReturn_t do_event_set_free(nvmlEventSet_t set) {
    if (init_count == 0) return NVML_ERROR_UNINITIALIZED;
    if (!valid_set(set)) return NVML_ERROR_INVALID_ARGUMENT;
    set->used = 0;
    return NVML_SUCCESS;
}
API nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) { LOCKED(do_event_set_free(set)); }

static nvmlReturn_t do_supported_events(nvmlDevice_t dev, unsigned long long *types) {
    struct gpu *g;
    nvmlReturn_t r = device_out(dev, F_EVENTS, &g, NULL, types);
    if (!r) *types = NVML_EVENT_TYPE_XID_CRITICAL_ERROR;
    return r;
}
API nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t dev, unsigned long long *types) {
    LOCKED(do_supported_events(dev, types));
}

static nvmlReturn_t do_register_events(nvmlDevice_t dev, unsigned long long types,
                                       nvmlEventSet_t set) {
    struct gpu *g;
    nvmlReturn_t r = device(dev, F_EVENTS, &g, NULL);
    if (r) return r;
    if (!valid_set(set)) return NVML_ERROR_INVALID_ARGUMENT;
    if (types & ~NVML_EVENT_TYPE_XID_CRITICAL_ERROR) return NVML_ERROR_NOT_SUPPORTED;
    set->types[dev - handles] |= types;
    return NVML_SUCCESS;
}
API nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t dev, unsigned long long types,
                                          nvmlEventSet_t set) {
    LOCKED(do_register_events(dev, types, set));
}

/* Delivers the oldest XID not yet delivered to SET, from any GPU registered with it. */
static nvmlReturn_t do_event_wait(nvmlEventSet_t set, nvmlEventData_t *data) {
    nvmlReturn_t r = ready();
    if (r) return r;
    if (!valid_set(set) || !data) return NVML_ERROR_INVALID_ARGUMENT;
    for (int h = 0; h < MAX_HANDLES; h++) {
        if (!handles[h].used || !(set->types[h] & NVML_EVENT_TYPE_XID_CRITICAL_ERROR)) continue;
        for (int i = 0; i < cur.ngpus; i++) {
            const struct gpu *g = &cur.gpus[i];
            if (strcmp(g->uuid, handles[h].uuid) != 0 || g->lost) continue;
            if (set->delivered[h] >= g->nxids) break;
            data->device = &handles[h];
            data->eventType = NVML_EVENT_TYPE_XID_CRITICAL_ERROR;
            data->eventData = g->xids[set->delivered[h]++];
            data->gpuInstanceId = NO_INSTANCE;
            data->computeInstanceId = NO_INSTANCE;
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_TIMEOUT;
}
API nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data,
                                     unsigned int timeout_ms) {
    (void)timeout_ms;
    LOCKED(do_event_wait(set, data));
}
API nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t *data,
                                  unsigned int timeout_ms) {
    (void)timeout_ms;
    LOCKED(do_event_wait(set, data));
}

/* ---- processes -------------------------------------------------------- */

/* Fills INFOS (24- or 16-byte records, by V1) with the GPU's processes of one kind. */
static nvmlReturn_t do_processes(nvmlDevice_t dev, int graphics, int v1, unsigned int *count,
                                 void *infos) {
    struct gpu *g;
    int index;
    unsigned int n = 0, k = 0;
    nvmlReturn_t r =
        device(dev, graphics ? F_GRAPHICS_PROCESSES : F_PROCESSES, &g, &index);
    if (r) return r;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    for (int i = 0; i < cur.nprocs; i++)
        if (cur.procs[i].gpu == index && cur.procs[i].graphics == graphics) n++;
    if (*count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    if (n && !infos) return NVML_ERROR_INVALID_ARGUMENT;
    for (int i = 0; i < cur.nprocs; i++) {
        const struct proc *p = &cur.procs[i];
        if (p->gpu != index || p->graphics != graphics) continue;
        if (v1) {
            nvmlProcessInfo_v1_t *o = (nvmlProcessInfo_v1_t *)infos + k++;
            o->pid = p->pid;
            o->usedGpuMemory = p->mem;
        } else {
            nvmlProcessInfo_t *o = (nvmlProcessInfo_t *)infos + k++;
            o->pid = p->pid;
            o->usedGpuMemory = p->mem;
            o->gpuInstanceId = g->mig ? p->gi : NO_INSTANCE;
            o->computeInstanceId = g->mig ? p->ci : NO_INSTANCE;
        }
    }
    *count = n;
    return NVML_SUCCESS;
}

/* An exported process listing: GRAPHICS or compute processes, in V1 or current records. */
#define PROCESS_LISTING(name, info_t, graphics, v1)                               \
    API nvmlReturn_t name(nvmlDevice_t dev, unsigned int *count, info_t *infos) { \
        LOCKED(do_processes(dev, graphics, v1, count, infos));                    \
    }
PROCESS_LISTING(nvmlDeviceGetComputeRunningProcesses_v3, nvmlProcessInfo_t, 0, 0)
PROCESS_LISTING(nvmlDeviceGetComputeRunningProcesses_v2, nvmlProcessInfo_t, 0, 0)
PROCESS_LISTING(nvmlDeviceGetComputeRunningProcesses, nvmlProcessInfo_v1_t, 0, 1)
PROCESS_LISTING(nvmlDeviceGetGraphicsRunningProcesses_v3, nvmlProcessInfo_t, 1, 0)
PROCESS_LISTING(nvmlDeviceGetGraphicsRunningProcesses_v2, nvmlProcessInfo_t, 1, 0)
PROCESS_LISTING(nvmlDeviceGetGraphicsRunningProcesses, nvmlProcessInfo_v1_t, 1, 1)

/* ---- per-process utilisation and MIG ----------------------------------- */

typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;

/* The samples taken after LAST_SEEN, NVML's way: NULL SAMPLES asks for the count. */
static nvmlReturn_t do_process_util(nvmlDevice_t dev, nvmlProcessUtilizationSample_t *samples,
                                    unsigned int *count, unsigned long long last_seen) {
    struct gpu *g;
    int index;
    unsigned int n = 0, k = 0;
    struct timespec now;
    unsigned long long now_us;
    nvmlReturn_t r = device(dev, F_PROCESS_UTIL, &g, &index);
    if (r) return r;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    clock_gettime(CLOCK_REALTIME, &now);
    now_us = (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000;
    for (int i = 0; i < cur.nprocs; i++) {
        const struct proc *p = &cur.procs[i];
        if (p->gpu == index && p->has_sample && (p->ts ? p->ts : now_us) > last_seen) n++;
    }
    if (n == 0) return NVML_ERROR_NOT_FOUND;
    if (!samples || *count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (int i = 0; i < cur.nprocs; i++) {
        const struct proc *p = &cur.procs[i];
        unsigned long long ts = p->ts ? p->ts : now_us;
        if (p->gpu != index || !p->has_sample || ts <= last_seen) continue;
        nvmlProcessUtilizationSample_t *o = samples + k++;
        memset(o, 0, sizeof(*o));
        o->pid = p->pid;
        o->timeStamp = ts;
        o->smUtil = p->sm;
        o->memUtil = p->mem_util;
    }
    *count = n;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t dev,
                                                 nvmlProcessUtilizationSample_t *samples,
                                                 unsigned int *count,
                                                 unsigned long long last_seen) {
    LOCKED(do_process_util(dev, samples, count, last_seen));
}

static nvmlReturn_t do_mig_mode(nvmlDevice_t dev, unsigned int *current, unsigned int *pending) {
    struct gpu *g;
    nvmlReturn_t r = device_out(dev, F_MIG, &g, NULL, current);
    if (r) return r;
    if (!pending) return NVML_ERROR_INVALID_ARGUMENT;
    *current = (unsigned int)g->mig;
    *pending = (unsigned int)g->mig;
    return NVML_SUCCESS;
}

API nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t dev, unsigned int *current,
                                      unsigned int *pending) {
    LOCKED(do_mig_mode(dev, current, pending));
}

/* ---- test hook -------------------------------------------------------- */

API void fakeNvmlReset(void) {
    pthread_mutex_lock(&mu);
    init_count = 0;
    present = 0;
    valid = 0;
    memset(&seen, 0, sizeof(seen));
    memset(&cur, 0, sizeof(cur));
    memset(handles, 0, sizeof(handles));
    memset(event_sets, 0, sizeof(event_sets));
    pthread_mutex_unlock(&mu);
}
