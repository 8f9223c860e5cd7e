# policy/: from findings to one action. Knows nothing of sockets.
noinst_LIBRARIES += policy/libpolicy.a
policy_libpolicy_a_SOURCES = policy/policy.c policy/policy.h
