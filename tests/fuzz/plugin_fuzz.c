// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libFuzzer harness for the iptables plugins libxt_CONNMARK (revisions 1 to
 * 3) and libxt_connmark, built into this program with ASan and UBSan and
 * linked against the system's libxtables.
 *
 * An input is a rule's extension arguments as iptables-restore reads them,
 * e.g. "-m connmark ! --mark 0x1/0x3 -j CONNMARK --save-mark --mask 0xff",
 * split at blanks. For every CONNMARK revision and both families it is
 * parsed the way iptables' do_parse() does: getopt_long() over the options
 * that xtables_options_xfrm() merged, "!" setting the invert flag of the
 * next option, xtables_option_tpcall()/mpcall() into the plugins' x6_parse,
 * then xtables_option_tfcall()/mfcall() into x6_fcheck and the XTOPT_MAND
 * check. xtables_error() longjmps back here: a rejected rule is a normal
 * outcome. An accepted rule is printed, saved and translated, and its save
 * text must parse back to the same blobs (what iptables -D and -C rely on):
 * a difference aborts, as a sanitizer finding does.
 *
 * Independently, the input's first bytes are taken as a raw blob of each
 * revision (what iptables -L and iptables-save get from the kernel) and
 * printed, saved and translated.
 *
 * The harness stands in for libxtables' extension registry: the plugins are
 * built with NO_SHARED_LIBS (their _init is a plain function, as in a
 * static iptables) and hand their structures to the xtables_register_*()
 * below, so no kernel is asked which revisions it supports.
 */
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xtables.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

#define MAX_ARGS	64
#define MAX_MATCHES	4
#define MAX_BLOB	64
#define SAVE_LEN	512
/* Each extension's getopt values, as iptables' xshared.h spaces them. */
#define XT_OPTION_OFFSET_SCALE	256

void libxt_CONNMARK_init(void);
void libxt_connmark_init(void);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TARGETS	4

static struct xtables_target *tg_reg[MAX_TARGETS];
static unsigned int tg_count;
static struct xtables_match *mt_reg;

/* The plugins' _init() calls these instead of libxtables' own. */
void xtables_register_targets(struct xtables_target *targets, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		if (tg_count == MAX_TARGETS)
			abort();
		tg_reg[tg_count++] = &targets[i];
	}
}

void xtables_register_match(struct xtables_match *match)
{
	mt_reg = match;
}

/* One rule being parsed; static, so that it survives the longjmp. */
static struct {
	struct xtables_target tg;
	bool has_tg;
	struct xtables_match mt[MAX_MATCHES];
	bool completed[MAX_MATCHES];
	unsigned int n_mt;
	union {
		struct ipt_entry e4;
		struct ip6t_entry e6;
	} fw;
} rule;

static jmp_buf bail;
/* XTCM_FUZZ_VERBOSE set: tell on stderr what became of each input. */
static bool verbose;

static void fuzz_exit_err(enum xtables_exittype status, const char *msg, ...)
	__attribute__((noreturn, format(printf, 2, 3)));

/*
 * Every revision is there, as for iptables-translate. The parameters are
 * those of xtables_globals.compat_rev.
 */
// NOLINTNEXTLINE(bugprone-easily-swappable-parameters)
static int fuzz_compat_rev(const char *name, uint8_t rev, int opt)
{
	return 1;
}

static struct option base_opts[] = {
	{.name = "match", .has_arg = 1, .val = 'm'},
	{.name = "jump", .has_arg = 1, .val = 'j'},
	XT_GETOPT_TABLEEND,
};

static struct xtables_globals fuzz_globals = {
	.program_name    = "xtcm-fuzz",
	.program_version = "0",
	.orig_opts       = base_opts,
	.exit_err        = fuzz_exit_err,
	.compat_rev      = fuzz_compat_rev,
};

/* Format the message, as iptables would print it, and reject the rule. */
static void fuzz_exit_err(enum xtables_exittype status, const char *msg, ...)
{
	char buf[256];
	va_list ap;

	va_start(ap, msg);
	vsnprintf(buf, sizeof(buf), msg, ap);
	va_end(ap);
	if (verbose)
		fprintf(stderr, "refused: %s\n", buf);
	longjmp(bail, 1);
}

static void merge_options(const struct xt_option_entry *entries,
			  unsigned int *offset)
{
	struct option *opts;

	opts = xtables_options_xfrm(fuzz_globals.orig_opts, fuzz_globals.opts,
				    entries, offset);
	if (opts == NULL)
		xtables_error(OTHER_PROBLEM, "out of memory");
	fuzz_globals.opts = opts;
}

/* -m NAME: a new instance of the match; earlier ones take no more options. */
static void load_match(const char *name)
{
	struct xtables_match *m;
	size_t size;
	unsigned int i;

	if (strcmp(name, "connmark") != 0)
		xtables_error(PARAMETER_PROBLEM, "no match \"%s\"", name);
	if (rule.n_mt == MAX_MATCHES)
		xtables_error(PARAMETER_PROBLEM, "too many matches");
	for (i = 0; i < rule.n_mt; i++)
		rule.completed[i] = true;
	m = &rule.mt[rule.n_mt];
	*m = *mt_reg;
	size = XT_ALIGN(sizeof(struct xt_entry_match)) + m->size;
	m->m = xtables_calloc(1, size);
	rule.n_mt++;
	m->m->u.match_size = size;
	snprintf(m->m->u.user.name, sizeof(m->m->u.user.name), "%s", m->name);
	m->m->u.user.revision = m->revision;
	m->mflags = 0;
	if (m->init != NULL)
		m->init(m->m);
	merge_options(m->x6_options, &m->option_offset);
}

/* -j NAME: the target, in the revision under test. */
static void load_target(const char *name, unsigned int revision)
{
	struct xtables_target *t = &rule.tg;
	unsigned int i;
	size_t size;

	if (rule.has_tg)
		xtables_error(PARAMETER_PROBLEM, "multiple -j flags");
	if (strcmp(name, "CONNMARK") != 0)
		xtables_error(PARAMETER_PROBLEM, "no target \"%s\"", name);
	for (i = 0; i < tg_count && tg_reg[i]->revision != revision; i++)
		;
	if (i == tg_count)
		abort();
	*t = *tg_reg[i];
	size = XT_ALIGN(sizeof(struct xt_entry_target)) + t->size;
	t->t = xtables_calloc(1, size);
	rule.has_tg = true;
	t->t->u.target_size = size;
	snprintf(t->t->u.user.name, sizeof(t->t->u.user.name), "%s", t->name);
	t->t->u.user.revision = t->revision;
	t->tflags = 0;
	if (t->init != NULL)
		t->init(t->t);
	merge_options(t->x6_options, &t->option_offset);
}

/* iptables' command_default(): the target's options first, then matches. */
static void dispatch(int c, char **argv, bool invert)
{
	unsigned int i, off;

	off = rule.tg.option_offset;
	if (rule.has_tg && (unsigned int)c >= off &&
	    (unsigned int)c < off + XT_OPTION_OFFSET_SCALE) {
		xtables_option_tpcall(c, argv, invert, &rule.tg, &rule.fw);
		return;
	}
	for (i = 0; i < rule.n_mt; i++) {
		off = rule.mt[i].option_offset;
		if (rule.completed[i] || (unsigned int)c < off ||
		    (unsigned int)c >= off + XT_OPTION_OFFSET_SCALE)
			continue;
		xtables_option_mpcall(c, argv, invert, &rule.mt[i], &rule.fw);
		return;
	}
	xtables_error(PARAMETER_PROBLEM, "unknown option \"%s\"",
		      argv[optind - 1]);
}

static void free_rule(void)
{
	unsigned int i;

	for (i = 0; i < rule.n_mt; i++)
		free(rule.mt[i].m);
	if (rule.has_tg)
		free(rule.tg.t);
	xtables_free_opts(1);
	memset(&rule, 0, sizeof(rule));
	fuzz_globals.opts = fuzz_globals.orig_opts;
	fuzz_globals.option_offset = 0;
}

/*
 * Parse argv (argv[0] is a program name) into rule with CONNMARK revision
 * tg_rev: 0 when iptables would accept it, -1 when it rejects it. The
 * caller frees the rule in both cases.
 */
static int parse_rule(int argc, char **argv, unsigned int tg_rev)
{
	bool invert = false;
	unsigned int i;
	int c;

	memset(&rule, 0, sizeof(rule));
	fuzz_globals.opts = fuzz_globals.orig_opts;
	fuzz_globals.option_offset = 0;
	if (setjmp(bail))
		return -1;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "-:m:j:", fuzz_globals.opts,
				NULL)) != -1) {
		switch (c) {
		case 1:
			if (strcmp(optarg, "!") != 0)
				xtables_error(PARAMETER_PROBLEM,
					      "Bad argument \"%s\"", optarg);
			if (invert)
				xtables_error(PARAMETER_PROBLEM,
					      "multiple consecutive ! not allowed");
			invert = true;
			continue;
		case 'm':
			if (invert)
				xtables_error(PARAMETER_PROBLEM,
					      "unexpected ! flag before --match");
			load_match(optarg);
			break;
		case 'j':
			if (invert)
				xtables_error(PARAMETER_PROBLEM,
					      "unexpected ! flag before --jump");
			load_target(optarg, tg_rev);
			break;
		case ':':
		case '?':
			xtables_error(PARAMETER_PROBLEM,
				      "unknown option or missing argument");
		default:
			dispatch(c, argv, invert);
			break;
		}
		invert = false;
	}
	if (invert)
		xtables_error(PARAMETER_PROBLEM, "! at the end");
	for (i = 0; i < rule.n_mt; i++)
		xtables_option_mfcall(&rule.mt[i]);
	if (rule.has_tg)
		xtables_option_tfcall(&rule.tg);
	return 0;
}

/* Where capture() points stdout: one stream for the whole run. */
static char capture_buf[4096];
static FILE *capture_file;

/* Run fn(arg) with stdout going into buf (truncated to size - 1). */
static void capture(void (*fn)(const void *arg), const void *arg,
		    char *buf, size_t size)
{
	FILE *saved = stdout;
	long pos;
	size_t len;

	rewind(capture_file);
	stdout = capture_file;
	fn(arg);
	stdout = saved;
	fflush(capture_file);
	pos = ftell(capture_file);
	if (pos < 0 || (unsigned long)pos >= sizeof(capture_buf))
		abort();	/* more than any plugin prints */
	len = (size_t)pos < size ? (size_t)pos : size - 1;
	memcpy(buf, capture_buf, len);
	buf[len] = '\0';
}

static uint8_t cur_family;

static void print_match(const void *arg)
{
	const struct xtables_match *m = arg;

	m->print(&rule.fw, m->m, 0);
	m->print(&rule.fw, m->m, 1);
}

static void save_match(const void *arg)
{
	const struct xtables_match *m = arg;

	m->save(&rule.fw, m->m);
}

static void print_target(const void *arg)
{
	const struct xtables_target *t = arg;

	t->print(&rule.fw, t->t, 0);
	t->print(&rule.fw, t->t, 1);
}

static void save_target(const void *arg)
{
	const struct xtables_target *t = arg;

	t->save(&rule.fw, t->t);
}

static void xlate_match(const struct xtables_match *m)
{
	struct xt_xlate_mt_params params = {.ip = &rule.fw, .match = m->m};
	struct xt_xlate *xl = xt_xlate_alloc(1024);

	xl_xlate_set_family(xl, cur_family);
	if (m->xlate(xl, &params) && xt_xlate_get(xl)[0] == '\0')
		abort();	/* translated into nothing */
	xt_xlate_free(xl);
}

static void xlate_target(const struct xtables_target *t)
{
	struct xt_xlate_tg_params params = {.ip = &rule.fw, .target = t->t};
	struct xt_xlate *xl = xt_xlate_alloc(1024);

	xl_xlate_set_family(xl, cur_family);
	if (t->xlate(xl, &params) && xt_xlate_get(xl)[0] == '\0')
		abort();
	xt_xlate_free(xl);
}

/* Split text at blanks into argv[1..], after a program name. */
static int split_args(char *text, char **argv, int max)
{
	int argc = 0;
	char *tok;

	argv[argc++] = "iptables";
	for (tok = strtok(text, " \t\n\r\f\v"); tok != NULL && argc < max;
	     tok = strtok(NULL, " \t\n\r\f\v"))
		argv[argc++] = tok;
	argv[argc] = NULL;
	return argc;
}

/* What a parsed rule amounts to: the save texts and the blobs. */
struct outcome {
	unsigned int n_mt;
	bool has_tg;
	char mt_save[MAX_MATCHES][SAVE_LEN];
	char tg_save[SAVE_LEN];
	uint8_t mt_blob[MAX_MATCHES][MAX_BLOB];
	uint8_t tg_blob[MAX_BLOB];
	size_t mt_len, tg_len;
};

/* Print, save and translate the parsed rule; record it in out. */
static void output_rule(struct outcome *out)
{
	char sink[SAVE_LEN];
	unsigned int i;

	memset(out, 0, sizeof(*out));
	out->n_mt = rule.n_mt;
	out->has_tg = rule.has_tg;
	for (i = 0; i < rule.n_mt; i++) {
		const struct xtables_match *m = &rule.mt[i];

		capture(print_match, m, sink, sizeof(sink));
		capture(save_match, m, out->mt_save[i], SAVE_LEN);
		xlate_match(m);
		out->mt_len = m->userspacesize;
		memcpy(out->mt_blob[i], m->m->data, m->userspacesize);
	}
	if (rule.has_tg) {
		const struct xtables_target *t = &rule.tg;

		capture(print_target, t, sink, sizeof(sink));
		capture(save_target, t, out->tg_save, SAVE_LEN);
		xlate_target(t);
		out->tg_len = t->userspacesize;
		memcpy(out->tg_blob, t->t->data, t->userspacesize);
	}
}

static void dump(const char *what, const uint8_t *blob, size_t len)
{
	size_t i;

	fprintf(stderr, "%s:", what);
	for (i = 0; i < len; i++)
		fprintf(stderr, " %02x", blob[i]);
	fprintf(stderr, "\n");
}

static void print_outcome(const struct outcome *out)
{
	unsigned int i;

	fprintf(stderr, "accepted:");
	for (i = 0; i < out->n_mt; i++)
		fprintf(stderr, " -m connmark%s", out->mt_save[i]);
	if (out->has_tg)
		fprintf(stderr, " -j CONNMARK%s", out->tg_save);
	fprintf(stderr, "\n");
}

/* The save text of an accepted rule parses back to the same blobs. */
static void check_round_trip(const struct outcome *first, unsigned int rev)
{
	static char text[(MAX_MATCHES + 1) * (SAVE_LEN + 16)];
	static struct outcome again;
	char *argv[4 * MAX_ARGS + 1];
	unsigned int i;
	size_t len;
	char *copy;
	int argc;

	len = 0;
	text[0] = '\0';
	for (i = 0; i < first->n_mt; i++)
		len += snprintf(text + len, sizeof(text) - len,
				" -m connmark%s", first->mt_save[i]);
	if (first->has_tg)
		snprintf(text + len, sizeof(text) - len, " -j CONNMARK%s",
			 first->tg_save);
	copy = strdup(text);
	if (copy == NULL)
		abort();
	argc = split_args(copy, argv, 4 * MAX_ARGS);
	if (parse_rule(argc, argv, rev) != 0) {
		fprintf(stderr, "rev %u: the save text \"%s\" is refused\n",
			rev, text);
		abort();
	}
	output_rule(&again);
	free_rule();
	free(copy);
	for (i = 0; i < first->n_mt; i++) {
		if (memcmp(first->mt_blob[i], again.mt_blob[i],
			   first->mt_len) == 0)
			continue;
		fprintf(stderr, "match %u: \"%s\" parses to another blob\n",
			i, first->mt_save[i]);
		dump("before", first->mt_blob[i], first->mt_len);
		dump("after", again.mt_blob[i], first->mt_len);
		abort();
	}
	if (first->has_tg &&
	    memcmp(first->tg_blob, again.tg_blob, first->tg_len) != 0) {
		fprintf(stderr, "CONNMARK rev %u: \"%s\" parses to another blob\n",
			rev, first->tg_save);
		dump("before", first->tg_blob, first->tg_len);
		dump("after", again.tg_blob, first->tg_len);
		abort();
	}
}

/* The input's first bytes as the blob of every revision, as if from the kernel. */
static void fuzz_blobs(const uint8_t *data, size_t size)
{
	char sink[SAVE_LEN];
	unsigned int i;

	for (i = 0; i <= tg_count; i++) {
		struct xtables_target t;
		struct xtables_match m;
		size_t len, room;
		void *ext;

		if (i < tg_count) {
			t = *tg_reg[i];
			room = XT_ALIGN(sizeof(struct xt_entry_target)) + t.size;
			t.t = ext = xtables_calloc(1, room);
			t.t->u.user.revision = t.revision;
			len = size < t.size ? size : t.size;
			memcpy(t.t->data, data, len);
			capture(print_target, &t, sink, sizeof(sink));
			capture(save_target, &t, sink, sizeof(sink));
			xlate_target(&t);
		} else {
			m = *mt_reg;
			room = XT_ALIGN(sizeof(struct xt_entry_match)) + m.size;
			m.m = ext = xtables_calloc(1, room);
			len = size < m.size ? size : m.size;
			memcpy(m.m->data, data, len);
			capture(print_match, &m, sink, sizeof(sink));
			capture(save_match, &m, sink, sizeof(sink));
			xlate_match(&m);
		}
		free(ext);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (xtables_init_all(&fuzz_globals, NFPROTO_IPV4) < 0)
		abort();
	libxt_CONNMARK_init();
	libxt_connmark_init();
	if (tg_count != 3 || mt_reg == NULL)
		abort();
	verbose = getenv("XTCM_FUZZ_VERBOSE") != NULL;
	capture_file = fmemopen(capture_buf, sizeof(capture_buf), "w");
	if (capture_file == NULL)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t families[] = {NFPROTO_IPV4, NFPROTO_IPV6};
	static struct outcome first;
	char *argv[MAX_ARGS + 1];
	unsigned int f, i;
	bool accepted;
	char *text;
	int argc;

	fuzz_blobs(data, size);

	for (f = 0; f < sizeof(families); f++) {
		cur_family = families[f];
		xtables_set_nfproto(cur_family);
		for (i = 0; i < tg_count; i++) {
			/* getopt permutes argv and strtok writes: a fresh copy */
			text = malloc(size + 1);
			if (text == NULL)
				abort();
			memcpy(text, data, size);
			text[size] = '\0';
			argc = split_args(text, argv, MAX_ARGS);
			if (verbose)
				fprintf(stderr, "CONNMARK rev %u, family %u: ",
					tg_reg[i]->revision, cur_family);
			accepted = parse_rule(argc, argv,
					      tg_reg[i]->revision) == 0;
			if (accepted)
				output_rule(&first);
			if (accepted && verbose)
				print_outcome(&first);
			free_rule();
			free(text);
			if (accepted)
				check_round_trip(&first, tg_reg[i]->revision);
		}
	}
	return 0;
}
