# Debian package (docs/install.md): `cpack -G DEB` in a build directory. Binaries go to
# /usr/bin, units to /lib/systemd/system, the default configuration and the approved
# runbooks to /etc/delegate (conffiles: upgrades keep local edits), example runbooks to
# /usr/share/doc/delegate/examples. The maintainer scripts create the delegate user and
# the directories with their modes; purge removes configuration, state and the user.
set(_pkg ${CMAKE_CURRENT_LIST_DIR})

install(FILES ${_pkg}/systemd/delegate-agent.service ${_pkg}/systemd/delegate-controlplane.service
        DESTINATION /lib/systemd/system)
install(FILES ${_pkg}/agent.yaml DESTINATION /etc/delegate
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
file(GLOB _runbooks CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/policies/runbooks/*.yaml)
install(FILES ${_runbooks} DESTINATION /etc/delegate/runbooks)
if(EXISTS ${PROJECT_SOURCE_DIR}/examples/runbooks)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/examples/runbooks/ DESTINATION share/doc/delegate/examples)
endif()
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${_pkg}/debian/copyright DESTINATION share/doc/delegate)
# A native package's changelog (Debian policy 12.7), compressed reproducibly.
string(TIMESTAMP _now "%a, %d %b %Y %H:%M:%S +0000" UTC)
file(WRITE ${CMAKE_BINARY_DIR}/debian/changelog
     "delegate (${PROJECT_VERSION}) unstable; urgency=medium\n\n  * Built from the project tree; see the project history.\n\n -- delegate maintainers <delegate@example.org>  ${_now}\n")
execute_process(COMMAND gzip -9nc ${CMAKE_BINARY_DIR}/debian/changelog
                OUTPUT_FILE ${CMAKE_BINARY_DIR}/debian/changelog.gz COMMAND_ERROR_IS_FATAL ANY)
install(FILES ${CMAKE_BINARY_DIR}/debian/changelog.gz DESTINATION share/doc/delegate)

# Every file under /etc is a conffile: dpkg keeps the administrator's version on upgrade
# and removes it only on purge.
set(_conffiles "/etc/delegate/agent.yaml\n")
foreach(rb IN LISTS _runbooks)
  get_filename_component(_name ${rb} NAME)
  string(APPEND _conffiles "/etc/delegate/runbooks/${_name}\n")
endforeach()
file(WRITE ${CMAKE_BINARY_DIR}/debian/conffiles "${_conffiles}")
foreach(script postinst prerm postrm)
  configure_file(${_pkg}/debian/${script} ${CMAKE_BINARY_DIR}/debian/${script} COPYONLY
                 FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
endforeach()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME delegate)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# (`cpack -D CPACK_PACKAGE_VERSION=...` overrides it: the package test builds a lower
# "previous" version that way to test upgrades.)
set(CPACK_PACKAGE_CONTACT "delegate maintainers <delegate@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "hardened agent that runs approved incident runbooks in a sandbox")
set(CPACK_PACKAGE_DESCRIPTION
    "delegate-agent polls a control plane over TLS 1.3, authorises each job\nlocally (OAuth or API keys), runs runbook steps in a namespace, seccomp\nand cgroup sandbox and streams signed, hash-chained audit records.\nAlso ships the reference control plane and the audit verifier.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# libcurl is loaded on the first HTTP call (dlopen), so shlibdeps cannot see it.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, libcurl4 (>= 7.85)")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_BINARY_DIR}/debian/conffiles;${CMAKE_BINARY_DIR}/debian/postinst;${CMAKE_BINARY_DIR}/debian/prerm;${CMAKE_BINARY_DIR}/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
include(CPack)
