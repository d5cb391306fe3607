# CMake toolchain file: cross-compile for 64-bit ARM Linux with Debian's / Ubuntu's
# g++-aarch64-linux-gnu (target libraries under /usr/aarch64-linux-gnu). Used by
# tools/cross_aarch64.sh; by hand:
#   cmake -S . -B build/aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=tools/aarch64-linux-gnu.cmake \
#         -DFASTRNN_PYTHON=OFF -DFASTRNN_BUILD_TESTS=ON -DPython_EXECUTABLE=$(which python)
#   qemu-aarch64 -L /usr/aarch64-linux-gnu build/aarch64/fastrnn_kernel_test
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(FASTRNN_CROSS_TRIPLE aarch64-linux-gnu CACHE STRING "Prefix of the cross compilers")
set(FASTRNN_CROSS_SYSROOT /usr/aarch64-linux-gnu CACHE PATH "The target's libraries")
set(CMAKE_C_COMPILER ${FASTRNN_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${FASTRNN_CROSS_TRIPLE}-g++)

# Libraries and headers of the target only from its root; programs (the host's Python, which finds
# cmeel-eigen) from the host. Packages from both: Eigen is headers only, and cmeel-eigen's CMake
# config lives in the host's Python environment.
set(CMAKE_FIND_ROOT_PATH ${FASTRNN_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# ctest runs the test program under user-mode emulation
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L ${FASTRNN_CROSS_SYSROOT})
