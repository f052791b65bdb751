-- Every show and its id at each source. A Spotify for Creators station and the OP3 show
-- that share matched episodes (see episode_map) are one show, named by the Anchor id; a show
-- known to one source only keeps that source's id.
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
)
SELECT show_id, anchor_show_id, op3_show_id, title, episodes, matched_episodes FROM linked
UNION ALL
SELECT show_id, show_id, NULL, NULL, 0, 0 FROM anchor_only
UNION ALL
SELECT show_id, NULL, show_id, NULL, 0, 0 FROM op3_only
ORDER BY show_id
