/*-------------------------------------------------------------------------
 *
 * args.c
 *	  What the SQL functions share at their edges: argument checks (22004,
 *	  22023), timestamp +/- interval and interval text for messages, and
 *	  the set-returning result helpers.
 *
 * Locks: none.  Nothing here reads a table.
 *
 * src/args.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "bidguard.h"

/*
 * bidguard_arg_not_null
 *		A required argument must not be NULL (22004).
 */
void
bidguard_arg_not_null(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
}

/*
 * bidguard_arg_id
 *		A marketplace or posting id: not NULL (22004), 1 to 256 characters
 *		(22023).
 */
text *
bidguard_arg_id(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	bidguard_arg_not_null(fcinfo, argno, argname);
	return bidguard_check_id(PG_GETARG_TEXT_PP(argno), argname);
}

/* The same checks of a value that is not an argument (an array element). */
text *
bidguard_check_id(text *t, const char *argname)
{
	int			nbytes = VARSIZE_ANY_EXHDR(t);

	if (nbytes == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname)));
	if (nbytes > BIDGUARD_MAX_ID_CHARS)
	{
		int			nchars = pg_mbstrlen_with_len(VARDATA_ANY(t), nbytes);

		if (nchars > BIDGUARD_MAX_ID_CHARS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s is too long", argname),
					 errdetail("It has %d characters; at most %d are allowed.",
							   nchars, BIDGUARD_MAX_ID_CHARS)));
	}
	return t;
}

/*
 * bidguard_interval_text
 *		An interval as the user's IntervalStyle shows it, for messages.
 */
char *
bidguard_interval_text(Interval *iv)
{
	return DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(iv)));
}

/*
 * bidguard_ts_plus, bidguard_ts_minus
 *		t + iv and t - iv as timestamptz + interval does it in SQL, on the UTC
 *		wall clock (a day is 24 hours in every zone), so that C and the SQL
 *		of the audit views agree on every window's edge.
 */
TimestampTz
bidguard_ts_plus(TimestampTz t, Interval *iv)
{
	return DatumGetTimestamp(DirectFunctionCall2(timestamp_pl_interval, TimestampGetDatum(t),
												 IntervalPGetDatum(iv)));
}

TimestampTz
bidguard_ts_minus(TimestampTz t, Interval *iv)
{
	return DatumGetTimestamp(DirectFunctionCall2(timestamp_mi_interval, TimestampGetDatum(t),
												 IntervalPGetDatum(iv)));
}

/*
 * bidguard_check_cooldown
 *		A cooldown argument: not negative and finite (22023).  Intervals can
 *		be infinite from PostgreSQL 17 on; an infinite cooldown would make a
 *		bot's first trade its last and every retry_after infinite, which is
 *		not a cooldown.
 */
void
bidguard_check_cooldown(Interval *cooldown, const char *argname)
{
	static const Interval zero = {0, 0, 0};

	if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(cooldown),
										  IntervalPGetDatum(&zero))) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", argname),
				 errdetail("The %s given is %s.", argname, bidguard_interval_text(cooldown))));
	if (INTERVAL_NOT_FINITE(cooldown))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be finite", argname),
				 errdetail("The %s given is %s.", argname, bidguard_interval_text(cooldown))));
}

/*
 * bidguard_arg_wait_ms
 *		A "wait" argument in milliseconds: not negative and finite (22023;
 *		NULL, not 'infinity', is how a caller asks to wait as long as
 *		lock_timeout allows); months count as 30 days, as in interval
 *		comparison; rounded up, so that a positive wait is never 0 (which
 *		means "do not wait"); capped at INT_MAX.
 */
int
bidguard_arg_wait_ms(Interval *wait)
{
	double		usecs;

	usecs = (double) wait->time +
		((double) wait->month * DAYS_PER_MONTH + wait->day) * USECS_PER_DAY;
	if (usecs < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait must not be negative"),
				 errdetail("The wait given is %s.", bidguard_interval_text(wait))));
	if (INTERVAL_NOT_FINITE(wait))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait must be finite"),
				 errdetail("The wait given is %s.", bidguard_interval_text(wait)),
				 errhint("Pass NULL to wait as long as lock_timeout allows.")));
	if (usecs == 0)
		return 0;
	if (usecs >= (double) INT_MAX * 1000.0)
		return INT_MAX;
	return (int) ((usecs + 999) / 1000);
}

/*
 * bidguard_arg_object
 *		A jsonb argument that must be a JSON object: not NULL (22004), an
 *		object (22023).
 */
Jsonb *
bidguard_arg_object(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	bidguard_arg_not_null(fcinfo, argno, argname);
	return bidguard_check_object(PG_GETARG_JSONB_P(argno), argname);
}

Jsonb *
bidguard_check_object(Jsonb *jb, const char *argname)
{
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
	{
		const char *what;

		if (JB_ROOT_IS_ARRAY(jb) && !JB_ROOT_IS_SCALAR(jb))
			what = "an array";
		else
			what = "a scalar";
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", argname),
				 errdetail("The value given is %s.", what)));
	}
	return jb;
}

/*
 * bidguard_init_srf
 *		InitMaterializedSRF for one of our set-returning functions.
 *
 * The result's descriptor is the one the executor already built for the
 * call (rsinfo->expectedDesc: FROM f(...) and SELECT f(...) both set it), so
 * that it is not built a second time from pg_proc's OUT arguments, as
 * get_call_result_type would (1.5-2% of a hot call's CPU).  A caller that
 * sets none gets the pg_proc one.
 */
void
bidguard_init_srf(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bits32		flags = 0;

	if (rsinfo != NULL && IsA(rsinfo, ReturnSetInfo) && rsinfo->expectedDesc != NULL)
		flags |= MAT_SRF_USE_EXPECTED_DESC;
	InitMaterializedSRF(fcinfo, flags);
}

/*
 * bidguard_return_row
 *		Return the single row of a RETURNS TABLE function.
 *
 * Call it once, after SPI_finish(): the values must live in the caller's
 * memory, not SPI's.
 */
void
bidguard_return_row(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	bidguard_init_srf(fcinfo);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}
