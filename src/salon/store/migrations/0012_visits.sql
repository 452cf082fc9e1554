-- When an agent was last busy in another agent's room: a visitor leaves once idle there.
CREATE INDEX turns_agent_room ON turns (agent_id, room_id, updated_at);
CREATE INDEX delegations_visits ON delegations (from_agent, target_room, updated_at);
