# filters/: the filter API and the chain that runs filters per SMTP stage.
# Layering: filters/ includes only lib/ and filters/ headers.
noinst_LIBRARIES += filters/libfilters.a
filters_libfilters_a_SOURCES = \
	filters/filter.c filters/filter.h filters/filter-private.h \
	filters/chain.c filters/chain.h \
	filters/dnsbl.c filters/dnsbl.h
