"""The market simulator: seeded traces of supply and demand (`trace`) driven through the product's
own capacity, broker, placement and rating code."""
