# nodeperf_bpf(NAME): compiles bpf/NAME.bpf.c with clang for the BPF target
# (CO-RE, -g for BTF) and generates its libbpf skeleton with bpftool, as the
# target NAME_skel; include "bpf/NAME.skel.h" from the build directory.
# Kernel types come from our own bpf/kernel_types.h, not from a vmlinux.h
# dumped from the build machine: the build needs no BTF of its own.
find_program(NODEPERF_CLANG NAMES clang clang-14 REQUIRED)
find_program(NODEPERF_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBBPF REQUIRED IMPORTED_TARGET libbpf>=1.0)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|amd64")
  set(NODEPERF_BPF_ARCH x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(NODEPERF_BPF_ARCH arm64)
else()
  message(FATAL_ERROR "nodeperf: no BPF target arch for ${CMAKE_SYSTEM_PROCESSOR}")
endif()

set(NODEPERF_BPF_OUT ${CMAKE_BINARY_DIR}/bpf)
file(MAKE_DIRECTORY ${NODEPERF_BPF_OUT})

function(nodeperf_bpf name)
  set(src ${CMAKE_SOURCE_DIR}/bpf/${name}.bpf.c)
  set(obj ${NODEPERF_BPF_OUT}/${name}.bpf.o)
  set(skel ${NODEPERF_BPF_OUT}/${name}.skel.h)
  add_custom_command(OUTPUT ${obj}
    COMMAND ${NODEPERF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_${NODEPERF_BPF_ARCH}
            -Wall -Werror -I${CMAKE_SOURCE_DIR} -idirafter /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}
            -MD -MF ${obj}.d -c ${src} -o ${obj}
    DEPENDS ${src}
    DEPFILE ${obj}.d
    COMMENT "BPF ${name}.bpf.c"
    VERBATIM)
  add_custom_command(OUTPUT ${skel}
    COMMAND sh -c "${NODEPERF_BPFTOOL} gen skeleton ${obj} name ${name}_bpf > ${skel}.tmp && mv ${skel}.tmp ${skel}"
    DEPENDS ${obj}
    COMMENT "skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(${name}_skel DEPENDS ${skel})
endfunction()
