# mpiwf: `make demo` and `make test` each set up .venv from PyPI when missing.
# MPIWF_SYSTEM_MPI=1 uses the machine's own MPI: mpi4py is built against it (or the
# installed one is used) instead of the PyPI MPICH wheel.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mpiwf-installed
NP ?= 4
MPI_TEST_TIMEOUT ?= 300
export PATH := $(abspath $(VENV))/bin:$(PATH)
# idle MPICH ranks blocked in MPI calls yield instead of spinning (mpi-notes.md)
export MPIR_CVAR_CH4_PROGRESS_THROTTLE ?= 1
export PYTHONDONTWRITEBYTECODE := 1

ifeq ($(MPIWF_SYSTEM_MPI),1)
VENV_FLAGS := --system-site-packages
EXTRAS := test,dev,plot
else
VENV_FLAGS :=
EXTRAS := mpich,test,dev,plot
endif

.PHONY: all venv test lint typecheck unit mpi ctest ctest-smoke demo clean

all: test

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if [ "$(MPIWF_SYSTEM_MPI)" = "1" ] && ! $(PY) -c "import mpi4py" 2>/dev/null; then \
	  $(PY) -m pip install -q --no-binary mpi4py "mpi4py>=4"; fi
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .

typecheck: $(STAMP)
	$(PY) -m mypy mpiwf

unit: $(STAMP)
	$(PY) -m pytest -q --timeout=300 tests/unit

# The MPI tier at 1, 2 and 4 ranks, each bounded: a deadlock fails, it never hangs.
mpi: $(STAMP)
	for n in 1 2 4; do \
	  echo "== tests/mpi at $$n rank(s)"; \
	  MPIEXEC_TIMEOUT=$(MPI_TEST_TIMEOUT) timeout -k 10 $$(($(MPI_TEST_TIMEOUT) + 30)) \
	    mpiexec -n $$n $(PY) -m mpi4py -m pytest -q -x --timeout=120 tests/mpi || exit 1; \
	done

# CTest (CMakeLists.txt): `make ctest` runs every tier through ctest (the same tests
# as `make mpi unit`); `make test` runs only its smoke label (1-rank MPI tier + job
# scripts) to check the CMake/CTest set-up itself, about 15 s.
BUILD ?= build
$(BUILD)/CTestTestfile.cmake: CMakeLists.txt $(STAMP)
	cmake -S . -B $(BUILD) -DPython3_EXECUTABLE=$(abspath $(PY)) > /dev/null

ctest: $(BUILD)/CTestTestfile.cmake
	ctest --test-dir $(BUILD) --output-on-failure

ctest-smoke: $(BUILD)/CTestTestfile.cmake
	ctest --test-dir $(BUILD) -L smoke --output-on-failure

test: lint typecheck mpi ctest-smoke unit

# DeepDriveMD (apps/deepdrivemd) on $(NP) local ranks, sequential then streaming; both
# traces land in $(DEMO_OUT), then makespans, I and utilization side by side.
DEMO_SIZE ?= demo
DEMO_OUT ?= demo-out

demo: $(STAMP)
	mkdir -p $(DEMO_OUT)
	for mode in sequential async; do \
	  MPIEXEC_TIMEOUT=300 mpiexec -n $(NP) $(PY) -m apps.deepdrivemd --size $(DEMO_SIZE) \
	    --mode $$mode --trace $(DEMO_OUT)/$$mode.h5 --rundir $(DEMO_OUT)/run-$$mode || exit 1; \
	done
	$(PY) -m mpiwf analyze $(DEMO_OUT)/sequential.h5 $(DEMO_OUT)/async.h5
	for kind in utilization gantt; do \
	  $(PY) -m mpiwf plot $(DEMO_OUT)/sequential.h5 $(DEMO_OUT)/async.h5 --kind $$kind \
	    -o $(DEMO_OUT)/compare-$$kind.png || exit 1; \
	done
	@echo "comparison plots: $(DEMO_OUT)/compare-utilization.png $(DEMO_OUT)/compare-gantt.png"

clean:
	rm -rf build *.egg-info .mypy_cache .ruff_cache mpiwf-run demo-out
