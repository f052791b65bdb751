-- Who listens, per show, UTC day and dimension (app, device, country, age, gender): Spotify's
-- shares as fractions and as counts (fraction x that day's plays) beside OP3's downloads
-- counted by app, device and country and their fractions. Spotify only reports countries
-- for all time: those rows have period 'all_time' and the snapshot's day (fraction x
-- lifetime plays); every other row has period 'day'.
WITH plays AS (
    SELECT show_id, date, sum(plays) AS plays FROM anchor.plays GROUP BY ALL
),
sp_frac AS (
    SELECT show_id, partition_date AS date, 'age' AS dimension, age_range AS value, fraction
    FROM anchor.plays_by_age_range
    UNION ALL
    SELECT show_id, partition_date, 'gender', gender, fraction FROM anchor.plays_by_gender
    UNION ALL
    SELECT show_id, partition_date, 'app', app, fraction FROM anchor.plays_by_app
    UNION ALL
    SELECT show_id, partition_date, 'device', device, fraction FROM anchor.plays_by_device
),
sp_day AS (
    SELECT s.show_id, f.date, 'day' AS period, f.dimension, f.value,
           f.fraction * p.plays AS spotify_count, f.fraction AS spotify_fraction
    FROM sp_frac f
    JOIN analytics.shows s ON s.anchor_show_id = f.show_id
    LEFT JOIN plays p ON p.show_id = f.show_id AND p.date = f.date
),
sp_geo AS (
    SELECT s.show_id, g.partition_date AS date, 'all_time' AS period, 'country' AS dimension,
           g.geo AS value, g.fraction * t.plays AS spotify_count, g.fraction AS spotify_fraction
    FROM (SELECT * FROM anchor.plays_by_geo
          QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id)) g
    JOIN analytics.shows s ON s.anchor_show_id = g.show_id
    LEFT JOIN (SELECT show_id, partition_date, sum(plays) AS plays FROM anchor.total_plays
               GROUP BY ALL) t
        ON t.show_id = g.show_id AND t.partition_date = g.partition_date
),
sp AS (SELECT * FROM sp_day UNION ALL SELECT * FROM sp_geo),
op_long AS (
    SELECT show_id, date, 'app' AS dimension, coalesce(agent_name, 'Unknown') AS value
    FROM op3.downloads
    UNION ALL
    SELECT show_id, date, 'device', coalesce(device_name, 'Unknown') FROM op3.downloads
    UNION ALL
    SELECT show_id, date, 'country', coalesce(country_code, 'Unknown') FROM op3.downloads
),
op AS (
    SELECT s.show_id, o.date, 'day' AS period, o.dimension, o.value, count(*) AS op3_count,
           count(*) / sum(count(*)) OVER (PARTITION BY s.show_id, o.date, o.dimension)
               AS op3_fraction
    FROM op_long o JOIN analytics.shows s ON s.op3_show_id = o.show_id
    GROUP BY s.show_id, o.date, o.dimension, o.value
)
SELECT coalesce(sp.show_id, op.show_id) AS show_id,
       coalesce(sp.date, op.date) AS date,
       coalesce(sp.period, op.period) AS period,
       coalesce(sp.dimension, op.dimension) AS dimension,
       coalesce(sp.value, op.value) AS value,
       sp.spotify_count, sp.spotify_fraction, op.op3_count, op.op3_fraction
FROM sp FULL OUTER JOIN op
    ON op.show_id = sp.show_id AND op.date = sp.date AND op.period = sp.period
   AND op.dimension = sp.dimension AND op.value = sp.value
ORDER BY show_id, date, period, dimension, value
