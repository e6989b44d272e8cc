// The Prisma driver adapter the WASM schema engine talks to PostgreSQL through:
// @prisma/adapter-pg 7.10.1 plus the one fix the engine needs from it.
import { PrismaPg } from '@prisma/adapter-pg';
import { ColumnTypeEnum } from '@prisma/driver-adapter-utils';

const PG_CHAR_OID = 18; // the one-byte catalog type "char" (pg_class.relkind, pg_constraint.contype...)
const PG_TEXT_OID = 25;

// The engine's catalog queries select "char" columns and read them as
// Character; typed as Text, the engine panics. adapter-pg rejects OID 18 as
// unsupported and maps no OID to Character, so "char" columns go through its
// type mapping as text and are retyped afterwards. performIO, adapter-pg's
// one step from a query to pg's result, is the last place their OIDs can be
// seen; the rows array, which the result set reuses from pg's result, links
// that step to the result set.
function withCharColumns(queryable) {
  const charColumns = new WeakMap();
  const performIO = queryable.performIO.bind(queryable);
  const queryRaw = queryable.queryRaw.bind(queryable);

  queryable.performIO = async (query) => {
    const result = await performIO(query);
    const indexes = [];
    result.fields.forEach((field, index) => {
      if (field.dataTypeID === PG_CHAR_OID) {
        field.dataTypeID = PG_TEXT_OID;
        indexes.push(index);
      }
    });
    if (indexes.length > 0) charColumns.set(result.rows, indexes);
    return result;
  };

  queryable.queryRaw = async (query) => {
    const resultSet = await queryRaw(query);
    for (const index of charColumns.get(resultSet.rows) ?? []) {
      resultSet.columnTypes[index] = ColumnTypeEnum.Character;
    }
    return resultSet;
  };
  return queryable;
}

// Only connect() is patched: diffing a live database against a datamodel
// opens no transaction and asks for no shadow database, so adapter-pg's
// transactions and its connectToShadowDb (whose teardown drops the database
// before closing its pool) stay unused.
export class SchemaEnginePg extends PrismaPg {
  async connect() {
    return withCharColumns(await super.connect());
  }
}
