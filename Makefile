# medsam: pure-C MedSAM / SAM inference engine.
#   make            build/medsam, build/libmedsam.a, build/libmedsam.so,
#                   build/libmedsam_cuda.so (when nvcc is found)
#   make test       build and run the Check suites (SAN=1: under ASan+UBSan)
#   make deps       install the Debian packages the build needs, when missing
#   make fuzz       libFuzzer targets (clang) in build-fuzz/
#   make bench      benchmarks (bench/), PyTorch comparison when python3-torch is present
#   make demo       synthetic phantom -> convert -> segment -> mask + overlay
#   make install PREFIX=/usr/local

CC      ?= gcc
PREFIX  ?= /usr/local
SAN     ?= 0

ifeq ($(SAN),1)
BUILD   ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT      = -O1 -g
else
BUILD   ?= build
SANFLAGS =
OPT      = -O2 -g
endif

WARN     = -Wall -Wextra -Werror -Wno-unused-parameter
CPPFLAGS = -Iinclude -I. -D_GNU_SOURCE
BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lm -lrt -lpthread)
CFLAGS  += -std=c11 $(OPT) $(WARN) -fPIC -pthread $(SANFLAGS) $(BLAS_CFLAGS)
LDLIBS   = $(BLAS_LIBS) -lz -lm -lpthread -ldl
LDFLAGS += -pthread $(SANFLAGS)

# Library layers (tools/ and tests/ sit on top). Files named *_avx2.c and
# *_avx512.c get the ISA flags; everything else builds for the baseline and
# picks a variant at run time.
LIB_DIRS = core kernels weights convert io model
LIB_SRC  = $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
LIB_OBJ  = $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC))
TOOL_SRC = $(wildcard tools/*.c)
TOOL_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(TOOL_SRC))
TEST_SRC = $(wildcard tests/test_*.c)
TEST_BIN = $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TEST_UTIL_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/util_*.c))
BENCH_SRC = $(wildcard bench/*.c)
BENCH_BIN = $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

AVX2_FLAGS   = -mavx2 -mfma -mf16c
AVX512_FLAGS = -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c

LIB_A  = $(BUILD)/libmedsam.a
LIB_SO = $(BUILD)/libmedsam.so
CLI    = $(BUILD)/medsam

MS_FIXTURES ?= $(if $(MEDSAM_FIXTURES),$(MEDSAM_FIXTURES),../shared/fixtures)

.SECONDARY:
.PHONY: all test deps fuzz bench bench-gpu demo install clean cuda check-deps
all: $(CLI) $(LIB_A) $(LIB_SO) cuda

$(BUILD)/obj/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(AVX2_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(AVX512_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(CHECK_CFLAGS) -MMD -MP -c $< -o $@

$(LIB_A): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIB_SO): $(LIB_OBJ)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(CLI): $(TOOL_OBJ) $(LIB_A)
	$(CC) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(LIB_A) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_UTIL_OBJ) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(TEST_UTIL_OBJ) $(LIB_A) $(CHECK_LIBS) $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB_A) $(LDLIBS)

# The CUDA backend: kernels-cuda/*.cu built by nvcc into a shared object that
# core/backend.c loads with dlopen at run time, so that neither libmedsam nor
# medsam links the CUDA runtime. Without nvcc it is skipped.
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(CUDA_HOME)/bin/nvcc
NVCC_FOUND := $(shell command -v $(NVCC) 2>/dev/null)
NVCCFLAGS = -std=c++17 -O3 -Iinclude -I. -D_GNU_SOURCE \
  -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
  -gencode arch=compute_90,code=compute_90 \
  -Xcompiler -fPIC,-fvisibility=hidden,-Wall -Werror all-warnings
CUDA_OBJ = $(patsubst %.cu,$(BUILD)/obj/%.o,$(wildcard kernels-cuda/*.cu))
CUDA_LIB = $(BUILD)/libmedsam_cuda.so

ifneq ($(NVCC_FOUND),)
cuda: $(CUDA_LIB)
else
cuda:
	@echo "nvcc not found: skipping the CUDA backend"
endif

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(CUDA_LIB): $(CUDA_OBJ)
	$(NVCC) -shared -cudart shared -o $@ $^ -Xlinker -rpath=$(CUDA_HOME)/lib64 -lcublas

# The CUDA backend under a host emulation (tests/cuda_emu/runtime.cpp):
# kernels-cuda/*.cu compiled as C++ into a libmedsam_cuda.so of its own, so
# that `make test` runs the CUDA kernels and the model's device paths on
# machines without a GPU. driver/libcuda.so.1 is an empty stand-in for the
# driver that core/backend.c looks for, and the copy of the CLI finds the
# emulated library beside it. x86-64 with a C++ compiler only.
EMU       = $(BUILD)/cuda-emu
EMU_LIB   = $(EMU)/libmedsam_cuda.so
EMU_STUB  = $(EMU)/driver/libcuda.so.1
EMU_CLI   = $(EMU)/medsam
EMU_OBJ   = $(patsubst kernels-cuda/%.cu,$(EMU)/obj/%.o,$(wildcard kernels-cuda/*.cu)) \
            $(EMU)/obj/runtime.o
EMU_FLAGS = -std=c++17 $(OPT) $(WARN) -fPIC -fvisibility=hidden $(SANFLAGS) $(BLAS_CFLAGS) \
            -Itests/cuda_emu $(CPPFLAGS)
EMU_SUITES = $(filter %/test_backend_ops %/test_model_tiny,$(TEST_BIN))
ifeq ($(shell uname -m)$(if $(shell command -v $(CXX) 2>/dev/null),yes),x86_64yes)
EMU_BUILT = $(EMU_LIB) $(EMU_STUB) $(EMU_CLI)
endif

$(EMU)/src/%.cpp: kernels-cuda/%.cu tests/cuda_emu/launches.pl
	@mkdir -p $(dir $@)
	perl tests/cuda_emu/launches.pl $< $@

$(EMU)/obj/%.o: $(EMU)/src/%.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_FLAGS) -MMD -MP -c $< -o $@

$(EMU)/obj/runtime.o: tests/cuda_emu/runtime.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_FLAGS) -MMD -MP -c $< -o $@

$(EMU_LIB): $(EMU_OBJ)
	$(CXX) -shared $(SANFLAGS) -o $@ $^ $(BLAS_LIBS)

$(EMU_STUB):
	@mkdir -p $(dir $@)
	printf '' | $(CC) -shared -fPIC -x c -o $@ -

$(EMU_CLI): $(CLI)
	@mkdir -p $(dir $@)
	cp $< $@

# Each suite runs on its own; all run even when one fails, then the summary
# line counts them. The suites that use the CUDA backend run a second time on
# the emulation, when it was built.
test: check-deps $(TEST_BIN) $(CLI) cuda $(EMU_BUILT)
	@pass=0; fail=0; \
	for t in $(TEST_BIN); do \
	  echo "== $$t"; \
	  if MEDSAM_FIXTURES=$(MS_FIXTURES) MEDSAM_CLI=$(CLI) $$t; then pass=$$((pass+1)); \
	  else fail=$$((fail+1)); echo "FAILED: $$t"; fi; \
	done; \
	$(if $(EMU_BUILT),,echo "SKIP emulated CUDA: needs x86-64 and $(CXX)";) \
	for t in $(if $(EMU_BUILT),$(EMU_SUITES)); do \
	  echo "== $$t (emulated CUDA)"; \
	  if MEDSAM_FIXTURES=$(MS_FIXTURES) MEDSAM_CLI=$(EMU_CLI) MEDSAM_CUDA_LIB=$(EMU_LIB) \
	     LD_LIBRARY_PATH=$(EMU)/driver$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH} $$t; \
	  then pass=$$((pass+1)); else fail=$$((fail+1)); echo "FAILED: $$t (emulated CUDA)"; fi; \
	done; \
	echo "suites: $$pass passed, $$fail failed"; \
	test $$fail -eq 0

check-deps:
	@pkg-config --exists check && (pkg-config --exists openblas || test -e /usr/include/x86_64-linux-gnu/cblas.h || test -e /usr/include/cblas.h) \
	  && test -e /usr/include/zlib.h || $(MAKE) deps

deps:
	@missing=""; \
	for p in libopenblas-dev zlib1g-dev check pkg-config; do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

FUZZ_SRC = $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN = $(patsubst fuzz/%.c,build-fuzz/%,$(FUZZ_SRC))
# The backend registry calls into kernels/, which the fuzz targets leave out.
FUZZ_LIB_SRC = $(filter-out core/backend%.c,$(foreach d,core weights convert io,$(wildcard $(d)/*.c)))
fuzz: $(FUZZ_BIN)
build-fuzz/%: fuzz/%.c $(FUZZ_LIB_SRC)
	@mkdir -p build-fuzz
	clang -std=c11 -O1 -g $(CPPFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_LIB_SRC) -lz -lm -lpthread

# bench/run.sh builds what it needs itself (with -k, so that a part which does
# not build yet leaves the rest measurable). BENCH_ARGS="--threads N --repeat N
# --json FILE".
bench:
	@MEDSAM_FIXTURES=$(MS_FIXTURES) bash bench/run.sh $(BENCH_ARGS)

# The encoder on the CUDA backend against PyTorch on the same GPU.
bench-gpu:
	@MEDSAM_FIXTURES=$(MS_FIXTURES) bash bench/run_gpu.sh $(BENCH_ARGS)

-include $(shell find $(BUILD)/obj $(BUILD)/cuda-emu/obj -name "*.d" 2>/dev/null)

# The README's first command: a synthetic phantom through the whole pipeline.
# WEIGHTS=path/to/medsam_vit_b.pth uses the official checkpoint instead of
# random weights of the same shape.
demo: check-deps all
	@WEIGHTS="$(WEIGHTS)" BUILD="$(BUILD)" sh tools/demo.sh

VERSION = $(shell sed -n 's/^#define MEDSAM_VERSION "\(.*\)"/\1/p' include/medsam.h)
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/medsam
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/
	if [ -f $(CUDA_LIB) ]; then install -m 755 $(CUDA_LIB) $(DESTDIR)$(PREFIX)/lib/; fi
	install -m 644 include/medsam.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' medsam.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/medsam.pc

clean:
	rm -rf build build-san build-fuzz
