# conf/: the annotated sample and the development configuration.
dist_sysconf_DATA = conf/postern.conf
EXTRA_DIST += conf/postern-dev.conf conf/dev-passwd
