-- Per episode and second (latest Spotify snapshot): listeners still playing and that as a
-- percentage of those who started (second 0).
WITH perf AS (
    SELECT * FROM anchor.episode_performance
    QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id)
),
starters AS (
    SELECT show_id, episode_id, max(listeners) FILTER (WHERE sample_second = 0) AS n
    FROM perf GROUP BY ALL
)
SELECT coalesce(e.show_id, s.show_id, p.show_id) AS show_id,
       p.episode_id AS spotify_episode_id,
       e.title,
       e.release_date,
       p.sample_second,
       p.listeners,
       100.0 * p.listeners / nullif(st.n, 0) AS percent_of_start
FROM perf p
JOIN starters st USING (show_id, episode_id)
LEFT JOIN analytics.shows s ON s.anchor_show_id = p.show_id
LEFT JOIN analytics.episode_map e
    ON e.anchor_show_id = p.show_id AND e.spotify_episode_id = p.episode_id
ORDER BY show_id, spotify_episode_id, sample_second
