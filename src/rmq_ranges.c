/*
 * rmq_ranges.c — the rmq_offset_range type: construction and checks.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "rmq_sql.h"

char *
rmq_text_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	char	   *s;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	s = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (s[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", name)));
	return s;
}

TimestampTz
rmq_ms_to_timestamptz(int64 ms)
{
	return (TimestampTz) (ms * 1000 -
						  (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);
}

int64
rmq_timestamptz_to_ms(TimestampTz ts)
{
	return (ts + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY) / 1000;
}

void
rmq_check_range(const RmqRange *r, int index)
{
	const char *where = index >= 0 ? psprintf(" (range %d)", index + 1) : "";

	if (r->topic == NULL || r->topic[0] == '\0' || r->broker == NULL || r->broker[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("offset range needs a topic and a broker%s", where)));
	if (r->queue_id < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("queue id must not be negative%s", where),
				 errdetail("Got %d.", r->queue_id)));
	if (r->from < 0 || r->until < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("offsets must not be negative%s", where),
				 errdetail("Got [" INT64_FORMAT ", " INT64_FORMAT ").", r->from, r->until)));
	if (r->from > r->until)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_offset must not be greater than until_offset%s", where),
				 errdetail("Got [" INT64_FORMAT ", " INT64_FORMAT ") for queue %d of broker \"%s\".",
						   r->from, r->until, r->queue_id, r->broker),
				 errhint("Offset ranges are half-open: [from_offset, until_offset).")));
}

RmqRange *
rmq_ranges_from_array(ArrayType *arr, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	RmqRange   *out;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("offset ranges must be a one-dimensional array")));
	get_typlenbyvalalign(ARR_ELEMTYPE(arr), &typlen, &typbyval, &typalign);
	deconstruct_array(arr, ARR_ELEMTYPE(arr), typlen, typbyval, typalign, &elems, &nulls, n);
	out = palloc0(sizeof(RmqRange) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		HeapTupleHeader t;
		bool		isnull[5];
		Datum		d[5];

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("offset range %d is null", i + 1)));
		t = DatumGetHeapTupleHeader(elems[i]);
		for (int a = 0; a < 5; a++)
		{
			d[a] = GetAttributeByNum(t, a + 1, &isnull[a]);
			if (isnull[a])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("offset range %d has a null field", i + 1),
						 errhint("Every range needs topic, broker, queue_id, from_offset and until_offset.")));
		}
		out[i].topic = TextDatumGetCString(d[0]);
		out[i].broker = TextDatumGetCString(d[1]);
		out[i].queue_id = DatumGetInt32(d[2]);
		out[i].from = DatumGetInt64(d[3]);
		out[i].until = DatumGetInt64(d[4]);
		rmq_check_range(&out[i], i);
	}
	return out;
}

PG_FUNCTION_INFO_V1(rmq_offset_range_make);
Datum
rmq_offset_range_make(PG_FUNCTION_ARGS)
{
	TupleDesc	td;
	Datum		v[5];
	bool		nulls[5] = {false};
	RmqRange	r;

	if (get_call_result_type(fcinfo, NULL, &td) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	r.topic = rmq_text_arg(fcinfo, 0, "topic");
	r.broker = rmq_text_arg(fcinfo, 1, "broker");
	for (int a = 2; a < 5; a++)
		if (PG_ARGISNULL(a))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("queue_id, from_offset and until_offset must not be null")));
	r.queue_id = PG_GETARG_INT32(2);
	r.from = PG_GETARG_INT64(3);
	r.until = PG_GETARG_INT64(4);
	rmq_check_range(&r, -1);
	v[0] = PG_GETARG_DATUM(0);
	v[1] = PG_GETARG_DATUM(1);
	v[2] = Int32GetDatum(r.queue_id);
	v[3] = Int64GetDatum(r.from);
	v[4] = Int64GetDatum(r.until);
	td = BlessTupleDesc(td);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(td, v, nulls)));
}
