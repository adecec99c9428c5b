# vxmcl: VoxelMorph in C with CPU and OpenCL backends.
#   make deps   install missing Debian packages (idempotent)
#   make        build ./vxm, libvxm.a, libvxm.so, vxm.pc
#   make test   deps + build + all tests (ends with "N passed, N failed")
#   make demo   deps + build + register the shared pair1 with the published model
#   make bench  timing table (bench/)
#   make train-demo  train on a synthetic 2-D cohort, Dice before/after (tests/train_demo.sh)

CC      ?= cc
PREFIX  ?= /usr/local
# The x86-64 baseline every 64-bit PC runs (issue 12: one portable binary); the CPU backend's kernels are also built
# for AVX2 and AVX-512 and chosen at run time (CPU_ISAS below, src/backend_cpu/cpu_isa.h).  Override for a
# machine-specific build, e.g. ARCH_FLAGS=-march=native.
X86_64  := $(filter x86_64%,$(shell $(CC) -dumpmachine 2>/dev/null))
ARCH_FLAGS ?= $(if $(X86_64),-march=x86-64)
OPT     ?= -O3
BUILD   := build

DEB_PACKAGES := build-essential pkg-config ocl-icd-opencl-dev ocl-icd-libopencl1 opencl-c-headers \
                libnifti2-dev libhdf5-dev zlib1g-dev libzip-dev libcjson-dev libpng-dev \
                pocl-opencl-icd mesa-opencl-icd clinfo valgrind zip libdeflate-dev
# qemu-user: tests/t_cpu_isa.sh runs the portable binary on emulated older CPUs (x86-64 v1, Haswell).
DEB_PACKAGES += qemu-user

PKG_CFLAGS := $(shell pkg-config --cflags hdf5 libzip libcjson libpng 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs hdf5 libzip libcjson libpng 2>/dev/null)

CFLAGS  += -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(OPT) $(ARCH_FLAGS) -fopenmp -fPIC \
           -Wall -Wextra -Werror -Iinclude -Isrc -I$(BUILD) -I/usr/include/nifti $(PKG_CFLAGS) \
           -DCL_TARGET_OPENCL_VERSION=120 -MMD -MP
LDLIBS  += -lOpenCL -lnifti2 -lznz $(PKG_LIBS) -ldeflate -lz -lm -fopenmp

LIB_SRC := $(sort $(wildcard src/core/*.c src/backend_cpu/*.c src/backend_opencl/*.c src/io/*.c \
                             src/model/*.c src/graph/*.c src/eval/*.c src/train/*.c src/synth/*.c))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
CL_SRC  := $(sort $(wildcard cl/*.cl))
CL_TILED_SRC := $(sort $(wildcard cl/tiled/*.cl))
TEST_SRC := $(sort $(wildcard tests/test_*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/cl_embed.o
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all deps test demo bench clean install asan
all: vxm libvxm.a libvxm.so vxm.pc

# CPU backend kernel variants (src/backend_cpu/cpu_isa.h): every src/backend_cpu file but cpu_isa.c is compiled once
# per variant with -DCPU_ISA=<variant>, and each variant's objects are linked into one object that exports only
# cpu_backend_create_<variant>; cpu_isa.c (compiled once, for the baseline) picks the variant at run time.
CPU_ISAS := baseline $(if $(X86_64),avx2 avx512)
CPU_ISA_FLAGS_baseline :=
CPU_ISA_FLAGS_avx2     := -march=x86-64-v3
CPU_ISA_FLAGS_avx512   := -march=x86-64-v4 -mprefer-vector-width=512
CPU_VARIANT_SRC := $(filter-out src/backend_cpu/cpu_isa.c,$(wildcard src/backend_cpu/*.c))
CPU_ISA_OBJ := $(foreach v,$(CPU_ISAS),$(CPU_VARIANT_SRC:%.c=$(BUILD)/isa/$(v)/%.o))
OBJCOPY ?= objcopy
LIB_OBJ := $(filter-out $(CPU_VARIANT_SRC:%.c=$(BUILD)/%.o),$(LIB_OBJ)) $(CPU_ISAS:%=$(BUILD)/cpu_isa_%.o)
$(BUILD)/src/backend_cpu/cpu_isa.o: CFLAGS += $(CPU_ISAS:%=-DCPU_HAVE_%)
define CPU_ISA_RULES
$(BUILD)/isa/$(1)/%.o: %.c
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) $$(CPU_ISA_FLAGS_$(1)) -DCPU_ISA=$(1) -c $$< -o $$@
$(BUILD)/cpu_isa_$(1).o: $(CPU_VARIANT_SRC:%.c=$(BUILD)/isa/$(1)/%.o)
	$$(LD) -r -o $$@.tmp $$(filter %.o,$$^) && $$(OBJCOPY) --keep-global-symbol=cpu_backend_create_$(1) $$@.tmp $$@ && rm -f $$@.tmp
endef
$(foreach v,$(CPU_ISAS),$(eval $(call CPU_ISA_RULES,$(v))))
# Objects are rebuilt when ARCH_FLAGS or OPT change (a tree built with -march=native must not stay half native).
$(BUILD)/arch_flags: FORCE
	@mkdir -p $(BUILD); echo '$(ARCH_FLAGS) $(OPT)' | cmp -s - $@ || echo '$(ARCH_FLAGS) $(OPT)' > $@
.PHONY: FORCE
$(LIB_OBJ) $(CLI_OBJ) $(CPU_ISA_OBJ): $(BUILD)/arch_flags

# Installs only what is missing: nothing is run when every package is present.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	else echo "deps: all Debian packages present"; fi

# Kernels are embedded as C strings at build time (never read from disk at run time).
# cl/tiled/ holds kernels compiled on demand with -D tile parameters (cl_variant.c), not part of the main program.
$(BUILD)/cl_embed.c: $(CL_SRC) $(CL_TILED_SRC) Makefile
	@mkdir -p $(BUILD)
	@{ echo '/* generated from the cl directory by the Makefile */'; \
	   for f in $(CL_SRC) $(CL_TILED_SRC); do \
	     n=$$(basename $$f .cl); echo "static const char src_$$n[] ="; \
	     sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $$f; echo ';'; \
	   done; \
	   echo 'const char *const vxm_cl_sources[] = {'; \
	   for f in $(CL_SRC); do echo "  src_$$(basename $$f .cl),"; done; echo '};'; \
	   echo 'const char *const vxm_cl_source_names[] = {'; \
	   for f in $(CL_SRC); do echo "  \"$$(basename $$f)\","; done; echo '};'; \
	   echo 'const int vxm_cl_source_count = sizeof vxm_cl_sources / sizeof vxm_cl_sources[0];'; \
	   echo 'const char *const vxm_cl_tiled_sources[] = {'; \
	   for f in $(CL_TILED_SRC); do echo "  src_$$(basename $$f .cl),"; done; echo '  0};'; \
	   echo 'const char *const vxm_cl_tiled_source_names[] = {'; \
	   for f in $(CL_TILED_SRC); do echo "  \"$$(basename $$f)\","; done; echo '  0};'; \
	   echo 'const int vxm_cl_tiled_source_count = sizeof vxm_cl_tiled_sources / sizeof vxm_cl_tiled_sources[0] - 1;'; \
	} > $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/cl_embed.o: $(BUILD)/cl_embed.c
	$(CC) $(CFLAGS) -Wno-overlength-strings -c $< -o $@

libvxm.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

libvxm.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDFLAGS) $(LDLIBS)

vxm: $(CLI_OBJ) libvxm.a
	$(CC) -o $@ $(CLI_OBJ) libvxm.a $(LDFLAGS) $(LDLIBS)

vxm.pc: Makefile
	@printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: vxm\nDescription: VoxelMorph registration on CPU and OpenCL\nVersion: 0.1.0\nCflags: -I$${includedir}\nLibs: -L$${libdir} -lvxm\nLibs.private: %s\n' \
	  '$(PREFIX)' '$(LDLIBS)' > $@

$(BUILD)/tests/%: tests/%.c tests/test_util.h $(wildcard tests/*.h) libvxm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< libvxm.a $(LDFLAGS) $(LDLIBS)

# AddressSanitizer build of the CLI (tests/t_asan.sh): leaks and invalid accesses abort the run.  Used instead
# of valgrind, which cannot execute the AVX-512 code that -march=native produces on our machines.
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
ASAN_OBJ := $(LIB_SRC:%.c=$(BUILD)/asan/%.o) $(CLI_SRC:%.c=$(BUILD)/asan/%.o) $(BUILD)/asan/cl_embed.o
asan: $(BUILD)/asan/vxm
$(BUILD)/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -c $< -o $@
$(BUILD)/asan/cl_embed.o: $(BUILD)/cl_embed.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -Wno-overlength-strings -c $< -o $@
$(BUILD)/asan/vxm: $(ASAN_OBJ)
	$(CC) $(ASAN_FLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 vxm $(DESTDIR)$(PREFIX)/bin/
	install -m 644 libvxm.a libvxm.so $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/vxm.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 vxm.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/

tests: all $(TEST_BIN) $(BUILD)/asan/vxm

test: deps
	$(MAKE) tests
	bash tests/run_tests.sh

demo: deps
	$(MAKE) all
	bash tests/demo.sh

$(BUILD)/bench/vxm_bench: bench/vxm_bench.c libvxm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< libvxm.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/bench/train_bench: bench/train_bench.c libvxm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< libvxm.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/bench/fma_peak: bench/fma_peak.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -march=native -o $@ $< -fopenmp

$(BUILD)/bench/cl_peak: bench/cl_peak.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< -lOpenCL

# gzip write/read speed, zlib against libdeflate (issue 12); make bench runs it from bench/bench.sh.
$(BUILD)/bench/gzip_bench: bench/gzip_bench.c libvxm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< libvxm.a $(LDFLAGS) $(LDLIBS)
bench: $(BUILD)/bench/gzip_bench

$(BUILD)/bench/make_cohort: bench/make_cohort.c libvxm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< libvxm.a $(LDFLAGS) $(LDLIBS)

# make train-demo: synthetic 2-D cohort from the shared brain scan, train, then Dice of the trained model vs
# the untrained one (tests/train_demo.sh).  tests/t_train_demo.sh needs the cohort generator too.
.PHONY: train-demo
train-demo: deps
	$(MAKE) all $(BUILD)/bench/make_cohort
	bash tests/train_demo.sh
tests: $(BUILD)/bench/make_cohort

bench: deps
	$(MAKE) all $(BUILD)/bench/vxm_bench $(BUILD)/bench/train_bench $(BUILD)/bench/fma_peak $(BUILD)/bench/cl_peak
	bash bench/bench.sh

clean:
	rm -rf $(BUILD) vxm libvxm.a libvxm.so vxm.pc tests/out

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(ASAN_OBJ:.o=.d)
-include $(CPU_ISA_OBJ:.o=.d)

# ---- fuzzing (issue 11; tests/fuzz/README.md) ----------------------------------------------------------------
# One libFuzzer target per reader: tests/fuzz/fuzz_<reader>.c, linked with the library and CLI sources compiled
# for coverage + ASan + UBSan under build/fuzz/.  make fuzz runs each for FUZZ_SECONDS from its committed seeds
# (and saved crashes); new corpus entries go to build/fuzz/corpus/<target>, never to the committed seeds.
# tests/t_fuzz.sh replays every seed and crash and fuzzes each target for a few seconds.
DEB_PACKAGES += clang libomp-dev
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 600
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
# The gcc build enforces -Werror; clang's extra warnings in library code are not fuzzing's business.
FUZZ_CFLAGS  := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O1 -g -fno-omit-frame-pointer -fopenmp \
                -Wall -Wextra -Iinclude -Isrc -I$(BUILD) -I/usr/include/nifti $(PKG_CFLAGS) \
                -DCL_TARGET_OPENCL_VERSION=120 -MMD -MP
FUZZ_OBJ     := $(patsubst %.c,$(BUILD)/fuzz/obj/%.o,$(LIB_SRC) $(filter-out src/cli/main.c,$(CLI_SRC))) \
                $(BUILD)/fuzz/obj/cl_embed.o
FUZZ_BIN     := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%)
.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_BIN)
$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(FUZZ_SAN) -c $< -o $@
$(BUILD)/fuzz/obj/cl_embed.o: $(BUILD)/cl_embed.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Wno-overlength-strings -fsanitize=fuzzer-no-link $(FUZZ_SAN) -c $< -o $@
$(BUILD)/fuzz/libvxm_fuzz.a: $(FUZZ_OBJ)
	rm -f $@ && ar rcs $@ $^
$(FUZZ_BIN): $(BUILD)/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz_common.h $(BUILD)/fuzz/libvxm_fuzz.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Werror -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $< $(BUILD)/fuzz/libvxm_fuzz.a \
	  $(LDFLAGS) $(LDLIBS)
fuzz: fuzz-build
	@rc=0; for t in $(FUZZ_TARGETS); do \
	  echo "== $$t: $(FUZZ_SECONDS) s"; \
	  bash tests/fuzz/run.sh $$t $(FUZZ_SECONDS) $(BUILD)/fuzz/corpus/$$t $(BUILD)/fuzz/artifacts || rc=1; \
	done; exit $$rc
-include $(FUZZ_OBJ:.o=.d)
# The seed corpus generator (tests/fuzz/make_seeds.c; regenerates tests/fuzz/seeds and the constructed crashes).
$(BUILD)/fuzz/make_seeds: tests/fuzz/make_seeds.c libvxm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< libvxm.a $(LDFLAGS) $(LDLIBS)
# make tests builds the fuzzers too when clang is there (about 15 s on 2 cores); tests/t_fuzz.sh builds them
# itself otherwise, and skips without clang.
tests: $(if $(shell command -v $(FUZZ_CC) 2>/dev/null),fuzz-build)
