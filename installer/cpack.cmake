# cpack.cmake: packaging. `cmake --build build --target package` (or `cd build && cpack -G DEB`)
# makes a Debian package of bitsmith, bitsmith-cli, the libraries, the technique plugins and the
# bundled model, depending on the Debian bookworm packages Bitsmith is built from.
set(CPACK_PACKAGE_NAME "bitsmith")
set(CPACK_PACKAGE_VENDOR "Bitsmith")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Workbench for compressing neural networks: quantization, pruning, distillation")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "bitsmith@localhost")
set(CPACK_GENERATOR "DEB;TGZ")
set(CPACK_DEBIAN_PACKAGE_SECTION "science")
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libqt6core6, libqt6gui6, libqt6widgets6, libqt6svg6, libqcustomplot2.1-qt6, libdnnl2, libhdf5-103-1, libhdf5-cpp-103-1, libgomp1")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
include(CPack)
