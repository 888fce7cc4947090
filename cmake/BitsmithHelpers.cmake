# Helper functions shared by every Bitsmith target: warnings, sanitizers, test registration.

function(bitsmith_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-unused-parameter)
  if(BITSMITH_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(BITSMITH_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer
                                             -fno-sanitize-recover=undefined)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
endfunction()

# bitsmith_add_library(name SOURCES ... [LINK ...]) : a shared library with the project defaults.
function(bitsmith_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LINK;PUBLIC_LINK" ${ARGN})
  add_library(${name} SHARED ${ARG_SOURCES})
  bitsmith_target_defaults(${name})
  target_link_libraries(${name} PRIVATE ${ARG_LINK} PUBLIC ${ARG_PUBLIC_LINK})
endfunction()

# bitsmith_add_test(name SOURCES ... [LINK ...] [LABELS ...] [TIMEOUT s]) : a Qt Test executable run by CTest.
function(bitsmith_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LINK;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  bitsmith_target_defaults(${name})
  target_link_libraries(${name} PRIVATE Qt6::Test ${ARG_LINK})
  target_compile_definitions(${name} PRIVATE
    BITSMITH_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    BITSMITH_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data"
    BITSMITH_SHARED_DATA_DIR="${PROJECT_SOURCE_DIR}/../shared/data")
  add_test(NAME ${name} COMMAND ${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set(_env "QT_QPA_PLATFORM=offscreen;OMP_WAIT_POLICY=PASSIVE;OMP_NUM_THREADS=1;BITSMITH_THREADS=1")
  if(BITSMITH_SANITIZE)
    list(APPEND _env "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1" "UBSAN_OPTIONS=print_stacktrace=1")
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT} ENVIRONMENT "${_env}" LABELS "${ARG_LABELS}")
endfunction()

# bitsmith_add_plugin(name ID id NAME "Display name" CATEGORY quantization SOURCES ... [SDK_VERSION n])
# A technique plugin: a Qt plugin linking only the core SDK, with its metadata JSON generated
# here (read by the loader before the library is loaded). Built into <build>/plugins and
# installed into lib/bitsmith/plugins.
function(bitsmith_add_plugin name)
  cmake_parse_arguments(ARG "" "ID;NAME;CATEGORY;SDK_VERSION;OUTPUT_DIR;RAW_METADATA" "SOURCES" ${ARGN})
  if(NOT ARG_SDK_VERSION)
    set(ARG_SDK_VERSION ${BITSMITH_SDK_VERSION})
  endif()
  if(NOT ARG_OUTPUT_DIR)
    set(ARG_OUTPUT_DIR ${BITSMITH_PLUGIN_BUILD_DIR})
  endif()
  set(_meta_dir ${CMAKE_CURRENT_BINARY_DIR}/${name}_meta)
  file(MAKE_DIRECTORY ${_meta_dir})
  if(ARG_RAW_METADATA) # test fixtures only
    file(WRITE ${_meta_dir}/plugin.json "${ARG_RAW_METADATA}\n")
  else()
    file(WRITE ${_meta_dir}/plugin.json
      "{ \"id\": \"${ARG_ID}\", \"name\": \"${ARG_NAME}\", \"category\": \"${ARG_CATEGORY}\", \"sdkVersion\": ${ARG_SDK_VERSION} }\n")
  endif()
  add_library(${name} MODULE ${ARG_SOURCES})
  bitsmith_target_defaults(${name})
  target_include_directories(${name} PRIVATE ${_meta_dir})
  target_link_libraries(${name} PRIVATE bitsmith_core)
  set_target_properties(${name} PROPERTIES PREFIX "" LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIR}
                        AUTOMOC_DEPEND_FILTERS "Q_PLUGIN_METADATA;\"FILE\"[ ]*\"([^\"]+)\"")
  if(ARG_OUTPUT_DIR STREQUAL BITSMITH_PLUGIN_BUILD_DIR)
    install(TARGETS ${name} LIBRARY DESTINATION lib/bitsmith/plugins)
  endif()
endfunction()
