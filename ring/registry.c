/* SPDX-License-Identifier: MIT */
/*
 * The rings this process has open, in an RCU hash table keyed by segment identity, so that
 * opening the same ring twice shares one mapping and one refcount.
 *
 * Lookups take no lock: an RCU read-side section and an increment-if-non-zero of the refcount.
 * Inserts and removals are serialised by one mutex, which only open and close take. The node of
 * a removed segment is freed after a grace period (call_rcu), so a concurrent lookup that still
 * sees it reads valid memory and simply fails to take a reference.
 *
 * The bulletproof flavour (urcu-bp) is used because a library cannot ask its callers to
 * register their threads. None of this is on a hot path.
 *
 * No _LGPL_SOURCE: liburcu 0.13's inline read-side code dereferences its per-thread reader
 * record, which liburcu allocates with less than the 128-byte alignment the type declares, and
 * UBSan (-fsanitize=alignment) stops every test there. The out-of-line calls do the same work
 * inside liburcu, off our hot paths anyway.
 */
#include <pthread.h>
#include <stdlib.h>
#include <urcu-bp.h>
#include <urcu/rculfhash.h>

#include "internal.h"

struct reg_node {
	struct cds_lfht_node node;
	struct rcu_head rcu;
	struct _shmring_seg *seg;
	/* Hand-off to call_rcu's thread. liburcu's queue already orders it, but ThreadSanitizer
	 * cannot see inside liburcu and would report every free as a race; RG1/AG1 show it. */
	_Atomic int retired;
	/* The same for the segment's fields, written before the node is added and read by
	 * lookups (RP1/AP1): cds_lfht_add orders them, where ThreadSanitizer cannot see. */
	_Atomic int published;
};

/* AP1: pairs with RP1 in _shmring_reg_insert(): the segment's key, base and geometry. */
static struct _shmring_seg *seg_of(struct cds_lfht_node *n)
{
	struct reg_node *rn = caa_container_of(n, struct reg_node, node);

	(void)atomic_load_explicit(&rn->published, memory_order_acquire);
	return rn->seg;
}

static struct cds_lfht *table;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t writers = PTHREAD_MUTEX_INITIALIZER;

static void before_fork(void)
{
	pthread_mutex_lock(&writers);
	call_rcu_before_fork();
	rcu_bp_before_fork(); /* urcu-bp's registry and grace-period locks, held across fork */
}

static void after_fork_parent(void)
{
	rcu_bp_after_fork_parent();
	call_rcu_after_fork_parent();
	pthread_mutex_unlock(&writers);
}

static void after_fork_child(void)
{
	rcu_bp_after_fork_child(); /* drops the parent's other threads from the reader registry */
	call_rcu_after_fork_child();
	/* mlock() is not inherited: the child's copies of the mappings are not locked. */
	struct cds_lfht_iter it;
	struct cds_lfht_node *n;
	if (table) {
		rcu_read_lock();
		/* Not cds_lfht_for_each_entry(): it offsets the NULL that ends the walk. */
		for (cds_lfht_first(table, &it); (n = cds_lfht_iter_get_node(&it)) != NULL;
		     cds_lfht_next(table, &it)) {
			struct reg_node *rn = caa_container_of(n, struct reg_node, node);
			atomic_fetch_and(&rn->seg->hints, ~(uint32_t)SHMRING_F_MLOCK);
		}
		rcu_read_unlock();
	}
	pthread_mutex_unlock(&writers);
}

static void table_init(void)
{
	table = cds_lfht_new(64, 64, 0, 0, NULL);
	/* call_rcu's worker thread does not survive fork(); liburcu needs these hooks. */
	pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

static unsigned long key_hash(const struct _shmring_key *k)
{
	uint64_t x = k->a * 0x9e3779b97f4a7c15ull ^ k->b * 0xc2b2ae3d27d4eb4full ^ k->type;

	return (unsigned long)(x ^ (x >> 29));
}

static int key_match(struct cds_lfht_node *n, const void *key)
{
	const struct _shmring_key *k = key;
	const struct _shmring_seg *s = seg_of(n);

	return s->key.type == k->type && s->key.a == k->a && s->key.b == k->b;
}

/* Takes a reference unless the count already reached zero (the segment is being closed). */
static int ref_if_live(struct _shmring_seg *s)
{
	long r = atomic_load_explicit(&s->refs, memory_order_relaxed);

	while (r > 0) {
		if (atomic_compare_exchange_weak_explicit(&s->refs, &r, r + 1, memory_order_acquire,
							  memory_order_relaxed))
			return 1;
	}
	return 0;
}

/* Under rcu_read_lock: a live segment with this key, referenced, or NULL. */
static struct _shmring_seg *lookup_locked(const struct _shmring_key *key)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *n;

	cds_lfht_lookup(table, key_hash(key), key_match, key, &it);
	for (n = cds_lfht_iter_get_node(&it); n;
	     cds_lfht_next_duplicate(table, key_match, key, &it), n = cds_lfht_iter_get_node(&it)) {
		struct _shmring_seg *s = caa_container_of(n, struct reg_node, node)->seg;

		if (ref_if_live(s))
			return s;
	}
	return NULL;
}

struct _shmring_seg *_shmring_reg_get(const struct _shmring_key *key)
{
	struct _shmring_seg *s;

	pthread_once(&table_once, table_init);
	if (!table)
		return NULL;
	rcu_read_lock();
	s = lookup_locked(key);
	rcu_read_unlock();
	return s;
}

struct _shmring_seg *_shmring_reg_named_at(const void *base)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *n;
	struct _shmring_seg *found = NULL;

	pthread_once(&table_once, table_init);
	if (!table)
		return NULL;
	rcu_read_lock();
	for (cds_lfht_first(table, &it); (n = cds_lfht_iter_get_node(&it)) != NULL;
	     cds_lfht_next(table, &it)) {
		struct _shmring_seg *s = seg_of(n);
		/* key and base are written before the node is added and never after (a dying
		 * segment keeps its base, and ref_if_live() refuses it). */
		if (s->key.type == _SHMRING_KEY_INODE && s->base == base && ref_if_live(s)) {
			found = s;
			break;
		}
	}
	rcu_read_unlock();
	return found;
}

struct _shmring_seg *_shmring_reg_insert(struct _shmring_seg *seg)
{
	struct reg_node *rn;
	struct _shmring_seg *won;

	pthread_once(&table_once, table_init);
	if (!table)
		return NULL;
	rn = calloc(1, sizeof(*rn));
	if (!rn)
		return NULL;
	rn->seg = seg;
	cds_lfht_node_init(&rn->node);

	pthread_mutex_lock(&writers);
	rcu_read_lock();
	won = lookup_locked(&seg->key);
	if (!won) {
		seg->reg_node = rn;
		/* RP1: pairs with AP1 in seg_of(). */
		atomic_store_explicit(&rn->published, 1, memory_order_release);
		/* Duplicates are allowed: a dying entry with the same key may still be there. */
		cds_lfht_add(table, key_hash(&seg->key), &rn->node);
		won = seg;
	}
	rcu_read_unlock();
	pthread_mutex_unlock(&writers);
	if (won != seg)
		free(rn);
	return won;
}

static void free_node(struct rcu_head *head)
{
	struct reg_node *rn = caa_container_of(head, struct reg_node, rcu);

	/* AG1: pairs with RG1 in _shmring_reg_put(): the closer's last writes happen before. */
	(void)atomic_load_explicit(&rn->retired, memory_order_acquire);
	free(rn->seg);
	free(rn);
}

void _shmring_reg_put(struct _shmring_seg *seg)
{
	struct reg_node *rn = seg->reg_node;

	if (atomic_fetch_sub_explicit(&seg->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* Last reference: nobody can take a new one (ref_if_live refuses zero). */
	if (rn) {
		pthread_mutex_lock(&writers);
		rcu_read_lock();
		cds_lfht_del(table, &rn->node);
		rcu_read_unlock();
		pthread_mutex_unlock(&writers);
	}
	_shmring_seg_release(seg);
	if (rn) {
		/* RG1: pairs with AG1 in free_node(). */
		atomic_store_explicit(&rn->retired, 1, memory_order_release);
		call_rcu(&rn->rcu, free_node);
	} else {
		free(seg);
	}
}
