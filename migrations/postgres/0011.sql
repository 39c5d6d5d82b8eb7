
    SELECT 1;
    