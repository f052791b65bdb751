-- Every show and its id at each source. A Spotify for Creators station and the OP3 show
-- that share matched episodes (see episode_map) are one show, named by the Anchor id; a show
-- known to one source only keeps that source's id. Its name comes from the network file
-- (network.shows, matched by either id), else OP3's title.
WITH linked AS (
    SELECT show_id, any_value(anchor_show_id) AS anchor_show_id,
           any_value(op3_show_id) AS op3_show_id, max(show_title) AS title,
           count(*) AS episodes, count(match_rule) AS matched_episodes
    FROM analytics.episode_map
    GROUP BY show_id
),
anchor_only AS (
    SELECT DISTINCT show_id FROM anchor.plays
    WHERE show_id NOT IN (SELECT anchor_show_id FROM linked WHERE anchor_show_id IS NOT NULL)
),
op3_only AS (
    SELECT DISTINCT show_id FROM op3.downloads
    WHERE show_id NOT IN (SELECT op3_show_id FROM linked WHERE op3_show_id IS NOT NULL)
),
all_shows AS (
    SELECT show_id, anchor_show_id, op3_show_id, title, episodes, matched_episodes FROM linked
    UNION ALL
    SELECT show_id, show_id, NULL, NULL, 0, 0 FROM anchor_only
    UNION ALL
    SELECT show_id, NULL, show_id, NULL, 0, 0 FROM op3_only
)
SELECT s.*, coalesce(n.name, s.title, s.show_id) AS name, n.show_id AS network_show_key,
       n.spotify_account
FROM all_shows s
LEFT JOIN network.shows n
       ON n.show_id = s.anchor_show_id OR n.webstation_id = s.anchor_show_id
       OR n.op3_show_uuid = s.op3_show_id
QUALIFY row_number() OVER (PARTITION BY s.show_id ORDER BY n.show_id) = 1
ORDER BY s.show_id
