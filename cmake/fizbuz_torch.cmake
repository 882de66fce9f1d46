# Shared by cpp/ and serving/redis/ (include()d after project()): C++17 and the
# LibTorch inside the venv's torch wheel, which each build.sh puts on
# CMAKE_PREFIX_PATH.
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
if(NOT CMAKE_BUILD_TYPE)
  set(CMAKE_BUILD_TYPE Release)
endif()

find_package(Torch REQUIRED)
# The ABI flag LibTorch was built with (the wheel uses the C++11 ABI).
set(CMAKE_CXX_FLAGS "${CMAKE_CXX_FLAGS} ${TORCH_CXX_FLAGS}")
